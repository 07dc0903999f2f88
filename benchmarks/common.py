"""Shared pieces of the benchmark scripts: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import time
from typing import Callable

import jax


def block(tree):
  return jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


def time_fn(fn: Callable, *args, repeats: int = 5, budget_s: float = 20.0) -> dict:
  """Median wall time of ``fn(*args)`` after one warm-up (compile) call.

  Repeats are cut short so that one measurement spends about ``budget_s`` at most.
  """
  start = time.perf_counter()
  block(fn(*args))
  compile_and_first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn(*args))
    times.append(time.perf_counter() - start)
    if sum(times) > budget_s:
      break
  return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
          "first_call_s": compile_and_first}


def machine() -> dict:
  dev = jax.devices()[0]
  return {"platform": dev.platform, "device_kind": getattr(dev, "device_kind", ""),
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "python": platform.python_version(), "jax": jax.__version__}


def write_json(path: str | None, payload: dict) -> None:
  if not path:
    return
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(payload, indent=2, sort_keys=True))
  print(f"wrote {out}")


def print_table(rows: list[dict], columns: list[str]) -> None:
  widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
  print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
  for r in rows:
    print("  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)
