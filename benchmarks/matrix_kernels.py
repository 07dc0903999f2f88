"""Forward+backward time of the matrix-toolkit paths (a benchmark, not a test).

    python benchmarks/matrix_kernels.py --out benchmarks/results/matrix_kernels.json

For each (B, D) and dtype it times ``jax.value_and_grad`` with respect to the (B, D)
embedding batch of:

* ``traces_primal`` / ``traces_dual``: ``tr(C(z, p)^k)``, k <= 4, on the D x D or B x B side;
* ``logdet_primal`` / ``logdet_dual``: ``log det(C(z, z) + I)`` by Cholesky on either side;
* ``taylor8_trace_powers`` / ``taylor8_all_powers``: ``tr TaylorLog_8(C + I)`` from traces of
  powers versus forming every power (Horner);
* ``eigh_custom`` / ``eigh_autodiff``: ``tr(P log(C + I))`` through the tie-safe custom
  derivative versus plain autodiff of ``eigh`` (whose gradient is NaN here when D > B).

Goals (issue 2): dual >= 10x faster than primal when D >= 4B; trace-of-powers >= 1.5x
faster than all powers at order 8; custom eigh backward within 1.1x of plain autodiff.
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

from mssl import matrix as M  # noqa: E402

SHAPES = ((256, 128), (512, 512), (1024, 1024), (512, 2048), (256, 4096))


def _naive_logm(a):
  w, u = jnp.linalg.eigh(a)
  return (u * jnp.log(w)) @ u.T


def paths(p):
  d = p.shape[1]
  eye = lambda z: jnp.eye(d, dtype=z.dtype)
  target = M.cross_covariance(p) + jnp.eye(d, dtype=p.dtype)
  return {
      "traces_primal": lambda z: jnp.sum(M.covariance_power_traces(z, p, order=4,
                                                                   side="primal")),
      "traces_dual": lambda z: jnp.sum(M.covariance_power_traces(z, p, order=4,
                                                                 side="dual")),
      "logdet_primal": lambda z: M.trace_covariance_logm(z, method="exact", side="primal"),
      "logdet_dual": lambda z: M.trace_covariance_logm(z, method="exact", side="dual"),
      "taylor8_trace_powers": lambda z: M.trace_taylor_logm(M.cross_covariance(z) + eye(z),
                                                            8),
      "taylor8_all_powers": lambda z: jnp.trace(M.taylor_logm(M.cross_covariance(z) + eye(z),
                                                              8)),
      "eigh_custom": lambda z: jnp.sum(target * M.logm(M.cross_covariance(z) + eye(z)).T),
      "eigh_autodiff": lambda z: jnp.sum(target * _naive_logm(M.cross_covariance(z)
                                                              + eye(z)).T),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=None)
  parser.add_argument("--dtypes", default="float32,float64")
  parser.add_argument("--shapes", default=None, help="e.g. 256x128,512x2048")
  parser.add_argument("--max-eigh-dim", type=int, default=2048,
                      help="skip eigh paths above this D (cubic cost on CPU)")
  parser.add_argument("--max-primal-dim", type=int, default=4096)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--budget", type=float, default=10.0, help="seconds per timing")
  args = parser.parse_args(argv)
  shapes = SHAPES if not args.shapes else tuple(
      tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
  rows = []
  for dtype_name in args.dtypes.split(","):
    with jax.enable_x64(dtype_name == "float64"):
      dtype = jnp.dtype(dtype_name)
      for b, d in shapes:
        rng = np.random.default_rng(0)
        z = jnp.asarray(rng.normal(size=(b, d)), dtype)
        p = jnp.asarray(rng.normal(size=(b, d)), dtype)
        row = {"B": b, "D": d, "dtype": dtype_name}
        for name, fn in paths(p).items():
          too_big = (name.startswith("eigh") or "primal" in name or "taylor" in name)
          limit = args.max_eigh_dim if name.startswith("eigh") else args.max_primal_dim
          if too_big and d > limit:
            row[name] = None
            continue
          step = jax.jit(jax.value_and_grad(fn))
          row[name] = common.time_fn(step, z, repeats=args.repeats,
                                     budget_s=args.budget)["median_s"]
        ratio = lambda a, c: (row[a] / row[c]) if row.get(a) and row.get(c) else None
        row["dual_speedup"] = ratio("traces_primal", "traces_dual")
        row["logdet_dual_speedup"] = ratio("logdet_primal", "logdet_dual")
        row["trace_powers_speedup"] = ratio("taylor8_all_powers", "taylor8_trace_powers")
        row["eigh_custom_over_autodiff"] = ratio("eigh_custom", "eigh_autodiff")
        rows.append(row)
        print(f"done B={b} D={d} {dtype_name}", flush=True)
  common.print_table(rows, ["B", "D", "dtype", "traces_primal", "traces_dual",
                            "dual_speedup", "logdet_dual_speedup", "trace_powers_speedup",
                            "eigh_custom", "eigh_autodiff", "eigh_custom_over_autodiff"])
  common.write_json(args.out, {"machine": common.machine(), "rows": rows,
                               "note": "seconds per jitted value_and_grad call (median)"})
  return rows


if __name__ == "__main__":
  main()
