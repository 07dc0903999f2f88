"""Forward+backward throughput of the backbones (a benchmark, not a test).

    python benchmarks/backbones.py --out benchmarks/results/models.json

Times a jitted training-style step (forward in train mode, a scalar loss on the pooled
features, gradients w.r.t. all parameters) for ResNet-18 (CIFAR stem, 32 x 32), ResNet-50
and ViT-B/16 (224 x 224), in float32 and bfloat16 compute, and reports images/second and
XLA's memory analysis of the compiled step (arguments + temporaries, an estimate of the
peak device memory it needs). Batch sizes are small by default so that it runs on a CPU.

``--masked`` times the whole masked-image training step instead (MAE ViT-B/16 at 224:
masking, encoder on the visible quarter, decoder, objective, gradients, AdamW update) for
MAE, U-MAE and M-MAE, so that the cost of the regulariser is the difference to MAE:

    python benchmarks/backbones.py --masked --out benchmarks/results/masked_image_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from mssl import models  # noqa: E402

CASES = {
    "resnet18_cifar": (lambda dtype: models.encoder("resnet18", stem="cifar", dtype=dtype),
                       32, 64),
    "resnet50": (lambda dtype: models.encoder("resnet50", dtype=dtype), 224, 8),
    "vit_base16": (lambda dtype: models.encoder("vit_base", dtype=dtype), 224, 8),
}


def make_step(model):
  def loss_fn(params, batch_stats, images):
    variables = {"params": params}
    if batch_stats is not None:
      variables["batch_stats"] = batch_stats
      feats, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    else:
      feats = model.apply(variables, images, train=True)
    return jnp.mean(jnp.square(feats.astype(jnp.float32)))
  return jax.jit(jax.value_and_grad(loss_fn))


def memory_mb(compiled):
  try:
    stats = compiled.memory_analysis()
    total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
             + stats.temp_size_in_bytes)
    return total / 2 ** 20
  except Exception:  # not every backend reports it
    return None


def masked_image_rows(batch: int, repeats: int, budget: float, size: str = "base"):
  """Train-step images/second of MAE / U-MAE / M-MAE with a ViT of ``size``.

  The three steps are compiled first and then timed in interleaved rounds (one call of
  each per round), so that a slow phase of the machine hits all three alike.
  """
  import statistics
  import time
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import common as config_common, mmae_shapes
  from mssl.steps import masked_image
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, 224, 224, 3)),
                       jnp.float32)
  batch_tree = {"views": (images,)}
  steps, states, dtypes = {}, {}, {}
  for objective in ("mae", "umae", "mmae"):
    config = config_common.masked_image_config(objective, size, None,
                                               loss=mmae_shapes.LOSS[objective])
    config.batch_size = batch
    config.model.dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    network = masked_image.build_network(config)
    tx, schedule = masked_image.make_optimizer(config, 1000, 100)
    states[objective] = masked_image.create_state(
        masked_image.init_params(network, 224, 0), tx, 0)
    steps[objective] = jax.jit(masked_image.make_train_step(config, network, tx, schedule))
    common.block(steps[objective](states[objective], batch_tree))  # compile + warm up
    dtypes[objective] = config.model.dtype
  times = {k: [] for k in steps}
  started = time.perf_counter()
  for _ in range(repeats):
    for objective, step in steps.items():
      t0 = time.perf_counter()
      common.block(step(states[objective], batch_tree))
      times[objective].append(time.perf_counter() - t0)
    if time.perf_counter() - started > budget * len(steps):
      break
  rows = []
  for objective, values in times.items():
    median = statistics.median(values)
    rows.append({"model": f"{objective}_vit_{size}16", "dtype": dtypes[objective],
                 "batch": batch, "image": 224, "step_s": median,
                 "images_per_s": batch / median, "runs": len(values)})
    print(f"{objective:5s} {batch / median:8.2f} img/s", flush=True)
  base = rows[0]["step_s"]
  for row in rows:
    row["step_time_vs_mae"] = row["step_s"] / base
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=None)
  parser.add_argument("--only", default=None, help="comma-separated case names")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--batch", type=int, default=None, help="override every batch size")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--budget", type=float, default=20.0)
  parser.add_argument("--masked", action="store_true",
                      help="time MAE / U-MAE / M-MAE ViT-B train steps instead")
  args = parser.parse_args(argv)
  if args.masked:
    rows = masked_image_rows(args.batch or 8, args.repeats, args.budget)
    common.print_table(rows, ["model", "dtype", "batch", "step_s", "images_per_s",
                              "step_time_vs_mae"])
    common.write_json(args.out, {"machine": common.machine(), "rows": rows})
    return rows
  rows = []
  for name, (build, size, batch) in CASES.items():
    if args.only and name not in args.only.split(","):
      continue
    batch = args.batch or batch
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, size, size, 3)),
                         jnp.float32)
    for dtype_name in args.dtypes.split(","):
      model = build(jnp.dtype(dtype_name))
      variables = model.init(jax.random.key(0), images[:1], train=False)
      stats = variables.get("batch_stats")
      step = make_step(model)
      compiled = step.lower(variables["params"], stats, images).compile()
      timing = common.time_fn(step, variables["params"], stats, images,
                              repeats=args.repeats, budget_s=args.budget)
      rows.append({"model": name, "dtype": dtype_name, "batch": batch, "image": size,
                   "step_s": timing["median_s"],
                   "images_per_s": batch / timing["median_s"],
                   "compiled_memory_mb": memory_mb(compiled),
                   "compile_s": timing["first_call_s"]})
      print(f"{name:16s} {dtype_name:9s} {batch / timing['median_s']:8.1f} img/s", flush=True)
  common.print_table(rows, ["model", "dtype", "batch", "image", "step_s", "images_per_s",
                            "compiled_memory_mb"])
  common.write_json(args.out, {"machine": common.machine(), "rows": rows})
  return rows


if __name__ == "__main__":
  main()
