"""Forward+backward time of every objective (a benchmark, not a test).

    python benchmarks/objectives.py --out benchmarks/results/objectives.json

For each (B, D) it times a jitted ``value_and_grad`` of each registered objective with
respect to the online embeddings (float32, defaults of docs/methods.md), plus Matrix-SSL and
MEC forced to the primal (D x D) and dual (B x B) sides. It also records XLA's FLOP
count of each call and the share of a ResNet-50 training step (forward+backward, about
3 x 4.1 GFLOP per 224 x 224 image) the objective would add at the same batch size.
Shapes whose primal side would not fit the time budget are skipped and listed.
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

from mssl import losses  # noqa: E402

SHAPES = ((256, 128), (512, 2048), (1024, 2048), (4096, 8192))
RESNET50_TRAIN_FLOPS_PER_IMAGE = 3 * 4.1e9


def variants(batch, dim):
  """name -> loss(z1, z2, p1, p2)."""
  lam_inv = losses.mec_lam_inv(batch, dim)
  two = lambda name, **kw: (lambda z1, z2, p1, p2: losses.get(name)(z1, z2, p1, p2, **kw)[0])
  pair = lambda name, **kw: (lambda z1, z2, p1, p2: losses.get(name)(z1, z2, **kw)[0])
  return {
      "matrix_ssl": two("matrix_ssl"),
      "matrix_ssl_primal": two("matrix_ssl", side="primal"),
      "matrix_ssl_dual": two("matrix_ssl", side="dual"),
      "matrix_ssl_exact": two("matrix_ssl", logm="exact"),
      "mec": two("mec", lam_inv=lam_inv),
      "mec_primal": two("mec", lam_inv=lam_inv, side="primal"),
      "mec_dual": two("mec", lam_inv=lam_inv, side="dual"),
      "kernel_ssl_linear": two("kernel_ssl"),
      "kernel_ssl_gaussian": two("kernel_ssl", kernel="gaussian"),
      "frossl": lambda z1, z2, p1, p2: losses.frossl([z1, z2])[0],
      "mmae": lambda z1, z2, p1, p2: losses.mmae_regularizer(z1),
      "umae": lambda z1, z2, p1, p2: losses.umae_regularizer(z1),
      "simclr": pair("simclr", temperature=0.2),
      "spectral_contrastive": pair("spectral_contrastive"),
      "barlow_twins": pair("barlow_twins"),
      "vicreg": pair("vicreg"),
      "byol": two("byol"),
      "simsiam": two("simsiam"),
  }


def _skip(name, batch, dim, max_primal):
  """The D x D side (and the exact eigh path) costs O(D^3): skip above --max-primal-dim."""
  primal_side = (name.endswith("_primal") or name == "matrix_ssl_exact"
                 or (batch >= dim and name in ("matrix_ssl", "mec", "kernel_ssl_linear")))
  return dim > max_primal and primal_side


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=None)
  parser.add_argument("--shapes", default=None, help="e.g. 256x128,512x2048")
  parser.add_argument("--only", default=None, help="comma-separated variant names")
  parser.add_argument("--max-primal-dim", type=int, default=4096)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--budget", type=float, default=10.0)
  args = parser.parse_args(argv)
  shapes = SHAPES if not args.shapes else tuple(
      tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
  rows, skipped = [], []
  for batch, dim in shapes:
    rng = np.random.default_rng(0)
    arrays = [jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32) for _ in range(4)]
    for name, fn in variants(batch, dim).items():
      if args.only and name not in args.only.split(","):
        continue
      if _skip(name, batch, dim, args.max_primal_dim):
        skipped.append(f"{name}@{batch}x{dim}")
        continue
      step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
      cost = step.lower(*arrays).compile().cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
      timing = common.time_fn(step, *arrays, repeats=args.repeats, budget_s=args.budget)
      resnet = RESNET50_TRAIN_FLOPS_PER_IMAGE * batch * 2  # two views per image
      rows.append({"objective": name, "B": batch, "D": dim, "median_s": timing["median_s"],
                   "gflops": flops / 1e9, "share_of_r50_step": flops / (flops + resnet)})
      print(f"{name:22s} B={batch:5d} D={dim:5d} {timing['median_s']*1e3:10.2f} ms",
            flush=True)
  common.print_table(rows, ["objective", "B", "D", "median_s", "gflops",
                            "share_of_r50_step"])
  if skipped:
    print("skipped (primal D x D side above --max-primal-dim):", ", ".join(skipped))
  common.write_json(args.out, {"machine": common.machine(), "rows": rows,
                               "skipped": skipped,
                               "note": "jitted value_and_grad wrt z1, z2; float32"})
  return rows


if __name__ == "__main__":
  main()
