"""Compile time of the test suite's kind of programs under XLA CPU flag sets (a benchmark,
not a test).

    python benchmarks/compile_time.py --out benchmarks/results/compile_time_cpu.json

The test suite runs thousands of tiny programs once each, so compiling them is most of
what it costs (cProfile of tests/losses/test_registry.py, tests/losses/test_kernel_ssl.py
and tests/test_matrix.py: 94 s of 176 s in XLA's backend compile, 2,536 programs).
Each flag set runs in a fresh process (XLA reads its flags once) and times, first call
included:

* ``losses``: ``value_and_grad`` of Matrix-SSL, VICReg, SimCLR and Barlow Twins at four
  batch sizes (16 programs);
* ``models``: jitted init and forward of the micro ViT and the width-8 ResNet-18;
* ``eager``: 60 eager ``(x * 2 + 1).sum()`` on new shapes (op-by-op dispatch compiles
  each op).

The flag sets add one flag at a time, from XLA's defaults to tests/conftest.py's choice
(``SPEED_FLAGS``; tests/test_benchmarks.py checks that the last set is it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

DEVICES = "--xla_force_host_platform_device_count=8"
# Each step's name and the flag it adds to the previous set.
STEPS = (("O0", "--xla_backend_optimization_level=0"),
         ("elemental_emitters", "--xla_cpu_use_fusion_emitters=false"),
         ("one_module", "--xla_cpu_parallel_codegen_split_count=1"))


def flag_sets() -> dict:
  """``{"default": "", "O0": ..., "O0+elemental_emitters": ..., ...}``, each set the one
  before it plus one step's flag."""
  sets, names, flags = {"default": ""}, [], []
  for name, flag in STEPS:
    names.append(name)
    flags.append(flag)
    sets["+".join(names)] = " ".join(flags)
  return sets


def workload() -> dict:
  """Seconds spent in each group of first calls (compile + one tiny run)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from mssl import losses, models
  times = {}
  start = time.perf_counter()
  rng = np.random.default_rng(0)
  for n in (8, 10, 12, 14):
    z = [jnp.asarray(rng.normal(size=(n, 16)), jnp.float32) for _ in range(4)]
    for name in ("matrix_ssl", "vicreg", "simclr", "barlow_twins"):
      fn = losses.get(name)
      if losses.spec(name).inputs == "two_branch":
        loss = lambda a, b, c, d, fn=fn: fn(a, b, c, d)[0]
        args = z
      else:
        loss = lambda a, b, fn=fn: fn(a, b)[0]
        args = z[:2]
      jax.block_until_ready(jax.jit(jax.value_and_grad(loss))(*args))
  times["losses"] = time.perf_counter() - start
  start = time.perf_counter()
  x = jnp.ones((2, 16, 16, 3))
  for model in (models.encoder("vit_micro", patch_size=4, image_size=16),
                models.encoder("resnet18", stem="cifar", width=8)):
    variables = jax.jit(lambda k, x, m=model: m.init(k, x, train=False))(jax.random.key(0), x)
    jax.block_until_ready(jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))(
        variables, x))
  times["models"] = time.perf_counter() - start
  start = time.perf_counter()
  for i in range(60):
    jax.block_until_ready((jnp.ones((i + 1, 3)) * 2 + 1).sum())
  times["eager"] = time.perf_counter() - start
  times["total"] = sum(times.values())
  return times


def measure(flags: str, repeats: int) -> dict:
  runs = []
  for _ in range(repeats):
    env = dict(os.environ, XLA_FLAGS=f"{DEVICES} {flags}".strip(), JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
      return {"flags": flags, "error": done.stderr.strip().splitlines()[-1:]}
    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
  return {"flags": flags, "runs": runs,
          **{f"{k}_s": statistics.median(r[k] for r in runs) for k in runs[0]}}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=None)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(workload()))
    return
  rows = []
  for name, flags in flag_sets().items():
    row = {"flag_set": name, **measure(flags, args.repeats)}
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "runs"}))
  base = rows[0].get("total_s")
  for row in rows:
    if base and row.get("total_s"):
      row["speedup_vs_default"] = base / row["total_s"]
  common.print_table(rows, ["flag_set", "losses_s", "models_s", "eager_s", "total_s",
                            "speedup_vs_default"])
  common.write_json(args.out, {"machine": common.machine(), "cpu": common.cpu_description(),
                               "rows": rows})


if __name__ == "__main__":
  main()
