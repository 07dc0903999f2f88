"""Throughput of a config's jitted training step, on device-resident batches.

    python benchmarks/step.py --config=configs/mmae_vitb.py --batch 256 --out FILE
    python benchmarks/step.py --config=configs/mssl_r50.py --batch 256 --out FILE
    python benchmarks/step.py --config=configs/quickstart.py --steps 5      # a CPU

Builds what training runs: the config's network, optimiser, state and train step
(``mssl.steps.two_view`` for two-view objectives, ``mssl.steps.masked_image`` for M-MAE / U-MAE / MAE)
under the loop's jit (``mssl.loop.jit_train_step``: state replicated and donated, batch
sharded over every device, the new state's finiteness check), and feeds it random batches that already live on the
device (uniform pixels, ``config.data.num_views`` views, labels), so the input pipeline
is out of the measurement. ``--set model.attention=xla`` (repeatable) overrides config
fields for ablations; ``--set log_every=1`` times the steps that also compute the
logged-only diagnostics.

Timing: ``compile_s`` is lowering + compilation; after ``--warmup`` steps, ``--steps``
steps run back to back (one wait at the end: ``samples_per_s``, ``step_ms.mean``), then
``--steps`` more each waited for (``step_ms.median`` / ``min``; these add the host's
dispatch of a step, which training overlaps with the previous step: on an H100 the M-MAE
step's median is 9 ms above its mean). A sample is one example of the batch with all its
views.

FLOPs (``flops_per_sample``) are counted analytically from the loss's jaxpr by
``benchmarks/flops.py``: every matrix product and convolution, ``2 x`` multiply-adds;
those that depend on the trained parameters count three times (forward, and the two
products of the backward pass), the others (the EMA teacher's forward pass) once.
``mfu`` is achieved FLOP/s over the peak of the devices for the config's compute dtype
(``flops.PEAK_TFLOPS``: data-sheet dense peaks of TPU v4 / v5e / v5p / v6e, H100, H200,
A100; ``null`` on CPUs). ``xla_cost_flops_per_sample`` is XLA's own ``cost_analysis()``
of the compiled step, for comparison only: it misses library calls (cuDNN convolutions,
cuBLAS products) on GPUs.

``--profile DIR`` records a ``jax.profiler`` trace of a few steps and adds to the JSON
the device time per step of the costliest XLA operations (``profile.top_ops``), by kind
(matmul, attention, convolution, reduction, ...) and by model region and pass
(``profile.by_category``), and how busy the device was. On GPUs, XLA runs most
operations inside command buffers (CUDA graphs) that the trace shows as one event each:
``XLA_FLAGS=--xla_gpu_enable_command_buffer=`` shows every operation (about the same
speed here). ``--hlo FILE`` writes the optimised HLO of the step.

Measured on an H100 at batch 256 (``benchmarks/results/step_h100.json``): M-MAE ViT-B/16
4,045 samples/s (24.0% MFU; 4,182 without the loop's state check; 2,216 before the step's
speed-ups), Matrix-SSL ResNet-50 two views + EMA teacher 2,141 samples/s (14.2% MFU).
"""

from __future__ import annotations

import argparse
import ast
import collections
import importlib.util
import pathlib
import re
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
import flops  # noqa: E402
from mssl import loop, sharding  # noqa: E402
from mssl.steps import family, masked_image, two_view  # noqa: E402



def load_config(spec: str):
  """``configs/X.py[:arg]`` -> (config, name)."""
  path, _, arg = spec.partition(":")
  path = pathlib.Path(path)
  if not path.is_absolute() and not path.exists():
    path = ROOT / path
  module_spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None), path.stem + (f":{arg}" if arg else "")


def apply_overrides(config, overrides):
  """``["model.attention=xla", "log_every=1"]`` -> fields set (values parsed as Python
  literals where they are one, else kept as strings)."""
  for item in overrides:
    key, _, text = item.partition("=")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value


def build(config, num_classes: int, total_steps: int, steps_per_epoch: int):
  """``(state, train_step)`` as the pretraining trainer builds them (its family's)."""
  steps = family.family_of(config)
  network = steps.build_network(config, num_classes)
  tx, schedule = steps.make_optimizer(config, total_steps, steps_per_epoch)
  state = jax.jit(lambda: steps.initial_state(
      steps.init_variables(network, config.data.image_size, config.seed), tx, config))()
  return state, steps.make_train_step(config, network, tx, schedule, total_steps,
                                      steps_per_epoch)


def count_flops(config, state, batch, num_classes: int, steps_per_epoch: int):
  """:class:`flops.FlopCount` of the config's loss (``None`` where the trainer exposes no
  ``make_loss_fn``). Attention is traced with XLA's formulation, whose products the
  counter sees (cuDNN's fused attention is one opaque call with the same FLOPs)."""
  config = config.copy_and_resolve_references()
  config.model.attention = "xla"
  if family.family_name(config.objective) == "masked_image":
    make_loss = getattr(masked_image, "make_loss_fn", None)
    if make_loss is None:
      return None
    loss_fn = make_loss(config, masked_image.build_network(config))
    return flops.count_loss(loss_fn, state.params, batch["views"][0], jax.random.key(0))
  make_loss = getattr(two_view, "make_loss_fn", None)
  if make_loss is None:
    return None
  loss_fn = make_loss(config, two_view.build_network(config, num_classes), steps_per_epoch)
  return flops.count_loss(loss_fn, state.params, state,
                          batch["views"][: config.data.num_views], batch["label"])


def random_batch(config, batch_size: int, num_classes: int, mesh, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  size = config.data.image_size
  views = tuple(rng.uniform(size=(batch_size, size, size, 3)).astype(np.float32)
                for _ in range(config.data.num_views))
  labels = rng.integers(0, num_classes, size=(batch_size,)).astype(np.int32)
  return jax.device_put({"views": views, "label": labels}, sharding.batch_sharded(mesh))


def xla_cost_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # not every backend implements it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


HLO_LINE = re.compile(r"^\s*(?:ROOT )?%?([\w.-]+) = .*?\s([a-z][\w-]*)\(")
REGIONS = re.compile(r"(decoder|encoder|projector|predictor|online_classifier|stem|"
                     r"stage\d)")


def hlo_index(text: str) -> dict:
  """Optimised-HLO instruction name -> (category, region, pass) for the profile summary:
  the category from the opcode, fusion kind or library call; the model region and
  forward/backward from the instruction's ``op_name`` metadata."""
  index = {}
  for line in text.splitlines():
    match = HLO_LINE.match(line)
    if not match:
      continue
    name, opcode = match.groups()
    target = re.search(r'custom_call_target="([^"]+)"', line)
    calls = re.search(r"calls=%([\w.-]+)", line)
    kind = re.search(r"kind=(k\w+)", line)
    callee = calls.group(1) if calls else ""
    if target:
      t = target.group(1).lower()
      category = ("matmul" if ("blas" in t and "matmul" in t) or "gemm" in t else
                  "attention" if "fmha" in t or "attention" in t else
                  "convolution" if "conv" in t else
                  "linear algebra" if "solver" in t or "solve" in t else "custom-call")
    elif opcode == "fusion":
      category = ("matmul" if any(w in callee for w in ("gemm", "dot"))
                  or name.startswith("ynn_fusion") else
                  "transpose/copy" if "transpose" in callee or "copy" in callee else
                  "reduction" if (kind and kind.group(1) == "kInput") or "reduce" in callee
                  else "elementwise")
    elif opcode in ("copy", "transpose"):
      category = "transpose/copy"
    else:
      category = opcode
    op_name = re.search(r'op_name="([^"]+)"', line)
    op_name = op_name.group(1) if op_name else ""
    region = REGIONS.search(op_name)
    backward = "transpose(" in op_name
    index[name] = (category, region.group(1) if region else "other",
                   "backward" if backward else "forward" if "jvp(" in op_name else "other")
  return index


def profile_ops(run_steps, num_steps: int, trace_dir: str, hlo_text: str,
                top: int = 40) -> dict:
  """Device time per step by XLA operation, category and model region, and the device's
  busy fraction, from a ``jax.profiler`` trace of ``num_steps`` steps."""
  with jax.profiler.trace(trace_dir):
    run_steps(num_steps)
  files = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  if not files:
    return {}
  data = jax.profiler.ProfileData.from_file(str(files[-1]))
  index = hlo_index(hlo_text)
  by_op: dict = collections.defaultdict(float)
  by_category: dict = collections.defaultdict(float)
  intervals, lines = [], []
  for plane in data.planes:
    on_device = plane.name.startswith("/device:")
    for line in plane.lines:
      if on_device:
        keep = line.name.startswith("Stream") or line.name == "XLA Ops"
      else:  # CPU: the client's threads run the ops
        keep = plane.name == "/host:CPU" and line.name.startswith("tf_XLA")
      lines.append(f"{plane.name}:{line.name}" + ("" if keep else " (skipped)"))
      if not keep:
        continue
      for event in line.events:
        if event.duration_ns <= 0 or event.name.startswith(("ThreadpoolListener",
                                                            "ThunkExecutor")):
          continue
        stats = dict(event.stats)
        op = str(stats.get("hlo_op", event.name))
        ms = event.duration_ns / 1e6 / num_steps
        by_op[op] += ms
        category, region, direction = index.get(op, ("unknown", "other", "other"))
        by_category[f"{category}"] += ms
        by_category[f"region {region} {direction}"] += ms
        intervals.append((event.start_ns, event.end_ns))
  busy, end = 0.0, None
  for start, stop in sorted(intervals):
    if end is None or start > end:
      busy, end = busy + (stop - start), stop
    elif stop > end:
      busy, end = busy + (stop - end), stop
  span = (max(e for _, e in intervals) - min(s for s, _ in intervals)) if intervals else 0
  rank = lambda table, n: [{"name": k, "ms_per_step": round(v, 4)} for k, v in
                           sorted(table.items(), key=lambda kv: -kv[1])[:n]]
  return {"steps": num_steps, "ops_ms_per_step": round(sum(by_op.values()), 3),
          "busy_ms_per_step": round(busy / 1e6 / num_steps, 3),
          "span_ms_per_step": round(span / 1e6 / num_steps, 3),
          "by_category": rank(by_category, 100), "top_ops": rank(by_op, top),
          "op_categories": {r["name"]: index.get(r["name"], ("unknown",))[0]
                            for r in rank(by_op, top)},
          "trace_lines": lines[:50], "trace": str(files[-1])}


def run(args) -> dict:
  config, name = load_config(args.config)
  apply_overrides(config, args.set or [])
  batch_size = args.batch or config.batch_size
  config.batch_size = batch_size
  mesh = sharding.make_mesh()
  if batch_size % mesh.size:
    raise ValueError(f"--batch {batch_size} must be a multiple of the {mesh.size} devices.")
  state, train_step = build(config, args.num_classes, args.total_steps,
                            args.steps_per_epoch)
  state = sharding.replicate(mesh, state)
  batch = random_batch(config, batch_size, args.num_classes, mesh)
  count = count_flops(config, state, batch, args.num_classes, args.steps_per_epoch)

  step = loop.jit_train_step(train_step, mesh)
  started = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - started
  hlo_text = compiled.as_text() if (args.hlo or args.profile) else ""
  if args.hlo:
    pathlib.Path(args.hlo).write_text(hlo_text)

  holder = {"state": state}

  def run_steps(n, wait_each=False):
    times, metrics = [], None
    for _ in range(n):
      t0 = time.perf_counter()
      holder["state"], metrics = compiled(holder["state"], batch)
      if wait_each:
        common.block((holder["state"], metrics))
        times.append(time.perf_counter() - t0)
    common.block((holder["state"], metrics))
    return times, metrics

  run_steps(args.warmup)
  started = time.perf_counter()
  _, metrics = run_steps(args.steps)
  back_to_back = time.perf_counter() - started
  times, _ = run_steps(args.steps, wait_each=True)

  samples_per_s = batch_size * args.steps / back_to_back
  dtype = jnp.dtype(config.model.dtype)
  devices = jax.devices()
  peak = flops.peak_flops(devices[0].device_kind, dtype) if devices[0].platform != "cpu" \
      else None
  flops_per_sample = count.step / batch_size if count is not None else None
  xla_flops = xla_cost_flops(compiled)
  result = {
      "config": name, "objective": config.objective, "model": config.model.name,
      "dtype": dtype.name, "batch": batch_size, "image_size": config.data.image_size,
      "num_views": config.data.num_views, "overrides": list(args.set or []),
      "steps": args.steps, "samples_per_s": samples_per_s,
      "step_ms": {"mean": 1e3 * back_to_back / args.steps,
                  "median": 1e3 * statistics.median(times), "min": 1e3 * min(times)},
      "compile_s": compile_s,
      "flops_per_sample": flops_per_sample,
      "forward_flops_per_sample": None if count is None else {
          "trainable": count.trainable / batch_size, "frozen": count.frozen / batch_size},
      "xla_cost_flops_per_sample": None if xla_flops is None else xla_flops / batch_size,
      "peak_flops_per_device": peak,
      "mfu": (flops_per_sample * samples_per_s / (peak * len(devices))
              if peak and flops_per_sample else None),
      "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
      "device_count": len(devices), "jax_version": jax.__version__,
      "final_loss": float(metrics["loss"]), "machine": common.machine(),
  }
  if args.profile:
    trace_dir = args.profile if args.profile != "tmp" else tempfile.mkdtemp()
    try:
      result["profile"] = profile_ops(run_steps, args.profile_steps, trace_dir, hlo_text)
    except Exception as error:  # the timings stand without the profile
      result["profile_error"] = repr(error)
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="configs/X.py[:arg]")
  parser.add_argument("--batch", type=int, default=None, help="global batch (default: "
                      "the config's)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--set", action="append", help="config override key=value")
  parser.add_argument("--num_classes", type=int, default=1000,
                      help="width of the online classifier (two-view steps)")
  parser.add_argument("--total_steps", type=int, default=100_000,
                      help="schedule length the optimiser and EMA are built with")
  parser.add_argument("--steps_per_epoch", type=int, default=1_000)
  parser.add_argument("--profile", default=None,
                      help="trace directory ('tmp': a temporary one)")
  parser.add_argument("--profile_steps", type=int, default=3)
  parser.add_argument("--hlo", default=None, help="write the optimised HLO here")
  parser.add_argument("--out", default=None, help="JSON file")
  args = parser.parse_args(argv)
  result = run(args)
  mfu = result["mfu"]
  print(f"{result['config']} batch {result['batch']} ({result['dtype']}, "
        f"{result['device_kind']}): {result['samples_per_s']:.1f} samples/s, "
        f"{result['step_ms']['median']:.2f} ms/step (median), compile "
        f"{result['compile_s']:.1f} s, "
        f"{(result['flops_per_sample'] or 0) / 1e9:.2f} GFLOP/sample, MFU "
        f"{'-' if mfu is None else f'{100 * mfu:.1f}%'}", flush=True)
  common.write_json(args.out, result)
  profile = result.get("profile")
  if profile:
    print(f"device: ops {profile['ops_ms_per_step']} ms/step, busy "
          f"{profile['busy_ms_per_step']} ms/step of a {profile['span_ms_per_step']} ms span")
    for key in ("by_category", "top_ops"):
      if profile[key]:
        common.print_table(profile[key][:30], ["name", "ms_per_step"])
  return result


if __name__ == "__main__":
  main()
