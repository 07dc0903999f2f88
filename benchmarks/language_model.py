"""CE against CE + MCE for a small causal LM on generated word problems, over seeds.

    python benchmarks/language_model.py                        # both arms, seeds 0-2
    python benchmarks/language_model.py --arms ce --seeds 0    # one run
    python benchmarks/language_model.py --table-only --readme  # JSON -> markdown, README

Each run is ``python -m mssl.main --config=configs/mce_lm_arith.py[:ce]`` (the same model,
data, budget and optimiser; the arms differ in the loss weight ``w`` alone, 0 or 1, fixed
before any run), and its ``results.json`` gives the exact match of the final answer on the
500 held-out problems under greedy decoding, with their teacher-forced CE and MCE. Rows go
to ``benchmarks/results/language_model_cpu.json`` as each run ends (a row already there for
the same arm, seed and command is kept: an interrupted table resumes):

    {"machine": str, "rows": [{"arm", "config", "seed", "steps", "wall_s",
      "exact_match", "eval_ce", "eval_mce"}]}

``language_model_cpu.md`` beside it is the markdown table: per arm the mean and range over
seeds, and the paired difference (CE + MCE minus CE, seed by seed), whatever its sign.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (benchmarks/common.py)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "language_model_cpu.json"
ARMS = {"ce": "configs/mce_lm_arith.py:ce", "ce+mce": "configs/mce_lm_arith.py"}
COLUMNS = ("arm", "config", "seed", "steps", "wall_s", "exact_match", "eval_ce",
           "eval_mce")
README_BEGIN = "<!-- language-model table: benchmarks/language_model.py --readme -->"
README_END = "<!-- end of language-model table -->"


def command(arm: str, seed: int, workdir: str, steps: int | None = None) -> list[str]:
  config = ARMS[arm] + (("," if ":" in ARMS[arm] else ":") + f"steps={steps}"
                        if steps else "")
  return [f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}"]


def run_row(arm: str, seed: int, root: pathlib.Path, steps: int | None) -> dict:
  workdir = root / f"{arm.replace('+', '_')}_seed{seed}"
  if workdir.exists():  # a half-finished run starts again
    shutil.rmtree(workdir)
  workdir.mkdir(parents=True)
  args = command(arm, seed, str(workdir), steps)
  with open(root / f"{workdir.name}.log", "w") as log:
    wall = common.run_main(args, log)
  results = json.loads((workdir / "results.json").read_text())
  return dict(arm=arm, config=common.command_text(command(arm, seed, "$WORKDIR", steps)),
              seed=seed, steps=int(results["steps"]), wall_s=round(wall, 1),
              exact_match=results["eval/exact_match"], eval_ce=results["eval/ce"],
              eval_mce=results["eval/mce"])


def summary(rows: list[dict]) -> dict:
  """Per arm: ``(mean, min, max)`` of each metric over seeds; and the paired differences
  of CE + MCE minus CE over the seeds both arms ran."""
  out = {}
  for arm in ARMS:
    mine = [r for r in rows if r["arm"] == arm]
    if mine:
      out[arm] = {"seeds": sorted(r["seed"] for r in mine), "steps": mine[0]["steps"],
                  "wall_s": common.mean_range(r["wall_s"] for r in mine)[0],
                  **{k: common.mean_range(r[k] for r in mine)
                     for k in ("exact_match", "eval_ce", "eval_mce")}}
  by_seed = {(r["arm"], r["seed"]): r for r in rows}
  paired = sorted(s for a, s in by_seed if a == "ce" and ("ce+mce", s) in by_seed)
  if paired:
    out["difference"] = {"seeds": paired, **{
        k: common.mean_range(by_seed["ce+mce", s][k] - by_seed["ce", s][k] for s in paired)
        for k in ("exact_match", "eval_ce", "eval_mce")}}
  return out


def _cell(value, scale=1.0, digits=3, sign=False) -> str:
  mean, low, high = (scale * v for v in value)
  f = f"{{:{'+' if sign else ''}.{digits}f}}"
  return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def markdown(table: dict) -> str:
  s = summary(table["rows"])
  lines = ["| loss | seeds | steps | exact match (%) | held-out CE | held-out MCE | "
           "min / run |", "|" + "---|" * 7]
  for arm in ARMS:
    if arm in s:
      a = s[arm]
      lines.append(f"| {'CE' if arm == 'ce' else 'CE + MCE (w = 1)'} | "
                   f"{','.join(map(str, a['seeds']))} | {a['steps']} | "
                   f"{_cell(a['exact_match'], 100, 1)} | {_cell(a['eval_ce'])} | "
                   f"{_cell(a['eval_mce'])} | {a['wall_s'] / 60:.1f} |")
  if "difference" in s:
    d = s["difference"]
    lines.append(f"| difference (paired by seed) | {','.join(map(str, d['seeds']))} | | "
                 f"{_cell(d['exact_match'], 100, 1, True)} | "
                 f"{_cell(d['eval_ce'], 1, 3, True)} | {_cell(d['eval_mce'], 1, 3, True)}"
                 " | |")
  return "\n".join(lines) + "\n"


def write_readme(table: dict, readme: pathlib.Path = ROOT / "README.md") -> None:
  common.write_table_block(README_BEGIN, README_END, markdown(table), table["machine"],
                           "benchmarks/language_model.py",
                           "benchmarks/results/language_model_cpu.json", readme=readme)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: ce, ce+mce")
  parser.add_argument("--steps", type=int, default=None, help="instead of the config's")
  common.add_table_arguments(parser, seeds="0,1,2", out=DEFAULT_OUT,
                             workdirs="mssl_language_model", block="block")
  args = parser.parse_args(argv)
  arms = common.parse_names(parser, "--arms", args.arms, ARMS, word="allowed")
  seeds = common.parse_seeds(parser, args.seeds)
  out = pathlib.Path(args.out)
  table = common.load_table(out)
  root = pathlib.Path(args.workdirs)
  root.mkdir(parents=True, exist_ok=True)

  def save(path, table):
    table["rows"].sort(key=lambda r: (list(ARMS).index(r["arm"]), r["seed"]))
    common.save_table(path, table)

  if not args.table_only:  # seed by seed: a partial table is already paired
    jobs = [(arm, seed, common.command_text(command(arm, seed, "$WORKDIR", args.steps)))
            for seed in seeds for arm in arms]
    common.run_rows(table, out, jobs, field="arm", save=save, rerun=args.rerun,
                    run=lambda arm, seed: run_row(arm, seed, root, args.steps))
  common.write_outputs(out, table, markdown, write_readme, args.readme)
  return 0


if __name__ == "__main__":
  sys.exit(main())
