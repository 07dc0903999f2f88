"""Shared pieces of the benchmark scripts: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
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


# ------------------------------------------------- result tables of mssl.main runs ----
ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpu_description() -> str:
  """``"2-core CPU (AMD EPYC ...), Python 3.11.7, jax 0.10.2"``: a results table's
  ``machine`` field."""
  model = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return (f"{os.cpu_count()}-core CPU ({model}), Python {platform.python_version()}, "
          f"jax {jax.__version__}")


def run_main(args: list[str], log) -> float:
  """``python -m mssl.main ARGS`` from the checkout, as a user runs it (XLA's default CPU
  optimisation, no test flags), its output to ``log``; returns its wall time. Raises
  RuntimeError naming the log when it fails."""
  env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  print("  $ python -m mssl.main " + " ".join(shlex.quote(a) for a in args), flush=True)
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "mssl.main", *args], cwd=ROOT, env=env,
                        stdout=log, stderr=subprocess.STDOUT)
  if done.returncode != 0:
    raise RuntimeError(f"mssl.main exited with {done.returncode}; see {log.name}")
  return time.perf_counter() - start


def load_results(workdir) -> dict:
  """A finished run's ``results.json``."""
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def command_text(args: list[str]) -> str:
  return "python -m mssl.main " + " ".join(shlex.quote(a) for a in args)


def load_table(path: pathlib.Path) -> dict:
  """A ``{"machine", "rows"}`` results file (empty when there is none yet)."""
  if not path.exists():
    return {"machine": "", "rows": []}
  table = json.loads(path.read_text())
  if set(table) != {"machine", "rows"}:
    raise ValueError(f"{path}: expected the keys 'machine' and 'rows', got {sorted(table)}.")
  return table


def save_table(path: pathlib.Path, table: dict) -> None:
  """Writes ``table`` whole to a temporary file, then renames it over ``path``: a kill
  leaves the old table or the new one, never half of one."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
  with os.fdopen(fd, "w") as f:
    json.dump(table, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)


def replace_readme_block(begin: str, end: str, block: str,
                         readme: pathlib.Path = ROOT / "README.md") -> None:
  """Replaces the text between the markers ``begin`` and ``end`` of the README."""
  text = readme.read_text()
  if begin not in text or end not in text:
    raise ValueError(f"{readme} has no {begin!r} ... {end!r} block.")
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  readme.write_text(f"{head}{begin}\n{block}{end}{tail}")


def write_table_block(begin: str, end: str, text: str, machine: str, script: str,
                      source: str, units: str = "", readme: pathlib.Path = ROOT / "README.md"
                      ) -> None:
  """A results table as the README's block between ``begin`` and ``end``, with the
  machine, the date and the command that rewrites it."""
  import datetime
  replace_readme_block(begin, end, (
      f"{text}\nMachine: {machine}; written {datetime.date.today().isoformat()}. "
      f"{units}Mean [min, max] over the seeds; written by `python {script} --table-only "
      f"--readme` from `{source}`.\n"), readme)


def mean_range(values) -> tuple:
  """``(mean, min, max)`` of a non-empty list."""
  values = list(values)
  return statistics.mean(values), min(values), max(values)


def add_table_arguments(parser, *, seeds: str, out, workdirs: str, block: str,
                        workdirs_help: str = "where the runs' workdirs go") -> None:
  """The flags every results-table benchmark takes: ``--seeds``, ``--out`` (the JSON),
  ``--workdirs`` (under the temporary folder, named ``workdirs``), ``--rerun``,
  ``--table-only`` and ``--readme`` (README.md's ``block``)."""
  parser.add_argument("--seeds", default=seeds)
  parser.add_argument("--out", default=str(out))
  parser.add_argument("--workdirs", default=os.path.join(tempfile.gettempdir(), workdirs),
                      help=workdirs_help)
  parser.add_argument("--rerun", action="store_true", help="replace rows already there")
  parser.add_argument("--table-only", action="store_true", help="no runs: JSON -> table")
  parser.add_argument("--readme", action="store_true",
                      help=f"also write the table into README.md's {block}")


def parse_names(parser, flag: str, text: str, known, *, word: str = "known") -> list[str]:
  """``--flag=a,b`` -> ``["a", "b"]``; an argparse error naming the flag, the unknown
  names and the ``known`` ones otherwise."""
  names = [n for n in text.split(",") if n]
  unknown = sorted(set(names) - set(known))
  if unknown:
    parser.error(f"{flag}: unknown {unknown}; {word}: {', '.join(known)}.")
  return names


def parse_seeds(parser, text: str) -> list[int]:
  """``--seeds=0,1,2`` -> ``[0, 1, 2]`` (an argparse error naming the flag otherwise)."""
  try:
    return [int(s) for s in text.split(",") if s]
  except ValueError:
    parser.error(f"--seeds={text!r}: expected comma-separated integers, e.g. 0,1,2.")


def joined_machines(before: str, now: str) -> str:
  """The table's machine line once a row from ``now`` joins rows from ``before``: each
  machine named once, in the order they joined ("A + B" when the rows were measured on
  two kinds)."""
  names = [m for m in (before or "").split(" + ") if m]
  return " + ".join(names + ([now] if now not in names else []))


def run_rows(table: dict, out: pathlib.Path, jobs, *, field: str, run, save,
             rerun: bool = False, after=None, machine=cpu_description) -> None:
  """Runs every ``(name, seed, config)`` of ``jobs`` that ``table`` does not hold yet
  (a row with the same ``field`` value, seed and config command), ``run(name, seed)``
  giving its row, and saves the table after each (``save(out, table)``): an interrupted
  table resumes where it stopped. A run that fails is reported and skipped.
  ``after(name, seed)`` runs after each new row (e.g. deleting its workdirs);
  ``machine()`` gives the table's machine line."""
  for name, seed, config in jobs:
    if not rerun and any(r[field] == name and r["seed"] == seed and r["config"] == config
                         for r in table["rows"]):
      print(f"{name} seed {seed}: kept (in {out.name})")
      continue
    print(f"{name} seed {seed}:", flush=True)
    try:
      row = run(name, seed)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
      print(f"  failed: {e}", flush=True)
      continue
    table["rows"] = [r for r in table["rows"]
                     if not (r[field] == name and r["seed"] == seed)] + [row]
    table["machine"] = joined_machines(table["machine"], machine())
    save(out, table)
    print("  " + ", ".join(f"{k}={v}" for k, v in row.items()
                           if k not in (field, "config", "seed") and v is not None),
          flush=True)
    if after is not None:
      after(name, seed)


def write_outputs(out: pathlib.Path, table: dict, markdown, write_readme,
                  readme: bool) -> None:
  """The markdown table beside the JSON (printed too), and the README block if asked."""
  if table["rows"]:
    text = markdown(table)
    out.with_suffix(".md").write_text(text)
    print(text)
    if readme:
      write_readme(table)
