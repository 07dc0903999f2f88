"""Does every objective learn? The results table: pretrained vs random init vs raw pixels.

    python benchmarks/learning.py                               # all objectives, seeds 0-2
    python benchmarks/learning.py --objectives mmae --seeds 0   # one row
    python benchmarks/learning.py --table-only --readme         # JSON -> markdown, README

For every (objective, seed) it runs the objective's CPU recipe on the embedded dataset
(``mssl_shapes/32``, generated locally, no download) as a user would, one
``python -m mssl.main`` process per run, and reads the run's ``results.json``:

* two-view objectives: ``configs/<objective>_r18_cifar.py:shapes`` (the quickstart's
  encoder and budget with the objective's own loss, heads and optimiser), whose final
  evaluation measures the linear probe and kNN of the pretrained encoder, of the same
  encoder at random initialisation and of the raw pixels;
* masked-image objectives (M-MAE, U-MAE, MAE): ``configs/mmae_shapes.py`` (micro ViT),
  then ``configs/finetune.py:shapes`` twice, from the pretrained encoder and from random
  initialisation (``--config.finetune.init=random``): the same fine-tune, budget and seed.

Rows go to ``benchmarks/results/learning_cpu.json`` (the schema below, fixed) as each run
ends, so an interrupted table resumes where it stopped: a row already there for the same
objective, seed and command is kept. ``learning_cpu.md`` beside it is the markdown table
(mean and min-max over seeds, and whether each objective meets the bar of issue 23):

    {"machine": str, "rows": [{"objective", "config", "seed", "steps", "wall_s",
      "pretrained_linear", "pretrained_knn", "random_linear", "random_knn",
      "pixels_linear", "pixels_knn", "finetune", "random_finetune"}]}

Accuracies are in [0, 1]; ``finetune`` / ``random_finetune`` are null for two-view rows.
The runs use XLA's default CPU optimisation (no test flags) and the machine's cores.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (benchmarks/common.py)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "learning_cpu.json"


def masked_image(objective: str) -> bool:
  """Whether ``objective`` is of the masked-image family (its registry entry says)."""
  from mssl.steps import family  # no TensorFlow
  return family.family_name(objective) == "masked_image"

COLUMNS = ("objective", "config", "seed", "steps", "wall_s", "pretrained_linear",
           "pretrained_knn", "random_linear", "random_knn", "pixels_linear", "pixels_knn",
           "finetune", "random_finetune")
# The bar of issue 23, on the means over seeds (accuracy fractions).
TWO_VIEW_MARGIN = 0.10   # pretrained - random init, on both the linear probe and kNN
FINETUNE_MARGIN = 0.05   # fine-tune from pretrained - fine-tune from random init
# Why an objective misses the bar, where it does (measured; shown in the table).
SHORTFALLS: dict[str, str] = {
    "byol": "seed-dependent at this budget, as SimSiam: with solo-learn's LARS seeds 0 and "
            "2 learn (kNN +4 / +6 pts), seed 1 stays below random init (17.5% against "
            "19.4%); its SGD recipe learned on no seed (docs/learning.md)",
    "simsiam": "with the official fixed predictor lr seed 0 learns (+21 / +20 pts) but "
               "seeds 1 and 2 collapse by step 500 (feature effective rank 5.6 and 10.0 of "
               "64); with a decayed one all three recipes tried collapsed (docs/learning.md)",
    "mec": "learns more slowly than Matrix-SSL on the same encoder (docs/learning.md)",
    # The masked-image rows at 800 pretraining steps of a micro ViT (400 until 2026-12-07).
    "umae": "the budget: the gain grows with pretraining (+3.5 over seeds 0-2 at 400 "
            "steps, +4.2 at 800); at 800 only M-MAE's regulariser reaches +5 "
            "(docs/learning.md)",
    "mae": "the budget: the gain grows with pretraining (+2.8 over seeds 0-2 at 400 steps, "
           "+4.3 at 800); at 800 only M-MAE's regulariser reaches +5 (docs/learning.md)",
}


def objectives() -> list[str]:
  """Every registered objective, in the table's order."""
  from mssl import losses  # no TensorFlow
  return sorted(losses.names(), key=order)


def commands(objective: str, seed: int, workdir: str, steps: int | None = None):
  """The ``python -m mssl.main`` argument lists of one row, by their role."""
  seed_arg = f"--config.seed={seed}"
  if masked_image(objective):
    words = ",".join(w for w in (objective if objective != "mmae" else "",
                                 f"steps={steps}" if steps else "") if w)
    pre = f"{workdir}/pretrain"
    pretrain = [f"--config=configs/mmae_shapes.py{':' + words if words else ''}",
                f"--workdir={pre}", seed_arg]
    finetune = ["--config=configs/finetune.py:shapes", f"--workdir={workdir}/finetune",
                f"--config.pretrained_workdir={pre}", seed_arg]
    random = ["--config=configs/finetune.py:shapes", f"--workdir={workdir}/random_finetune",
              f"--config.pretrained_workdir={pre}", "--config.finetune.init=random",
              seed_arg]
    return {"pretrain": pretrain, "finetune": finetune, "random_finetune": random}
  words = "shapes" + (f",steps={steps}" if steps else "")
  return {"pretrain": [f"--config=configs/{objective}_r18_cifar.py:{words}",
                       f"--workdir={workdir}/pretrain", seed_arg]}


def command_line(objective: str, seed: int, steps: int | None = None) -> str:
  """The row's ``config`` field: the exact commands, with ``$WORKDIR`` for the folder."""
  return " && ".join(common.command_text(args)
                     for args in commands(objective, seed, "$WORKDIR", steps).values())


def machine() -> str:
  return common.cpu_description()


run_main = common.run_main


results_of = common.load_results


def run_row(objective: str, seed: int, root: pathlib.Path, steps: int | None) -> dict:
  workdir = root / f"{objective}_seed{seed}"
  if workdir.exists():  # a half-finished row starts again: its runs resume otherwise
    shutil.rmtree(workdir)
  workdir.mkdir(parents=True)
  runs = commands(objective, seed, str(workdir), steps)
  wall = 0.0
  with open(workdir / "log.txt", "w") as log:
    for args in runs.values():
      wall += run_main(args, log)
  pre = results_of(str(workdir / "pretrain"))
  row = dict(objective=objective, config=command_line(objective, seed, steps), seed=seed,
             steps=int(pre["steps"]), wall_s=round(wall, 1),
             pretrained_linear=pre.get("pretrained/linear_probe"),
             pretrained_knn=pre.get("pretrained/knn"),
             random_linear=pre.get("random_init/linear_probe"),
             random_knn=pre.get("random_init/knn"),
             pixels_linear=pre.get("pixels/linear_probe"),
             pixels_knn=pre.get("pixels/knn"), finetune=None, random_finetune=None)
  if masked_image(objective):
    row["finetune"] = results_of(str(workdir / "finetune")).get("eval/accuracy")
    row["random_finetune"] = results_of(str(workdir / "random_finetune")).get(
        "eval/accuracy")
  return row


# ------------------------------------------------------------ the file -----------------
load = common.load_table


def save(path: pathlib.Path, table: dict) -> None:
  table["rows"].sort(key=lambda r: (order(r["objective"]), r["seed"]))
  common.save_table(path, table)


# The table's order: the four papers' methods, then the baselines; an objective
# registered later goes at the end.
ORDER = ("matrix_ssl", "kernel_ssl", "mec", "frossl", "mmae", "umae", "mae", "simclr",
         "byol", "simsiam", "barlow_twins", "vicreg", "spectral_contrastive")


def order(objective: str) -> tuple:
  return (ORDER.index(objective), "") if objective in ORDER else (len(ORDER), objective)


# ------------------------------------------------------------ the summary --------------
def summary(rows: list[dict]) -> list[dict]:
  """Per objective: the mean, min and max over its seeds of every accuracy, and whether
  the means meet the bar (``learns``) with the reason where they do not."""
  out = []
  for objective in sorted({r["objective"] for r in rows}, key=order):
    mine = [r for r in rows if r["objective"] == objective]
    stats = {"objective": objective, "seeds": sorted(r["seed"] for r in mine),
             "steps": mine[0]["steps"],
             # The fastest seed's minutes: the runs share the machine with other work, and
             # the least loaded one is closest to what a quiet machine takes.
             "wall_s": min(r["wall_s"] for r in mine)}
    for key in COLUMNS[5:]:
      values = [r[key] for r in mine if r[key] is not None]
      stats[key] = common.mean_range(values) if values else None
    mean = {k: v[0] for k, v in stats.items() if isinstance(v, tuple)}
    if masked_image(objective):
      gaps = [("fine-tune", mean["finetune"] - mean["random_finetune"], FINETUNE_MARGIN),
              ("linear probe", mean["pretrained_linear"] - mean["random_linear"], 1e-9)]
    else:
      gaps = [("linear probe", mean["pretrained_linear"] - mean["random_linear"],
               TWO_VIEW_MARGIN),
              ("kNN", mean["pretrained_knn"] - mean["random_knn"], TWO_VIEW_MARGIN),
              ("kNN vs pixels", mean["pretrained_knn"] - mean["pixels_knn"], 1e-9)]
    misses = [f"{name} {100 * gap:+.1f} pts (needs > {100 * bar:+.0f})"
              for name, gap, bar in gaps if gap < bar]
    stats["meets_bar"] = not misses               # on the seeds run so far
    stats["learns"] = not misses and len(mine) >= 3
    stats["why"] = "; ".join(filter(None, [SHORTFALLS.get(objective), *misses]))
    out.append(stats)
  return out


def _cell(value) -> str:
  if value is None:
    return "-"
  mean, low, high = value
  return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown(table: dict) -> str:
  rows = summary(table["rows"])
  lines = ["| objective | seeds | steps | linear: pretrained | random init | pixels | "
           "kNN: pretrained | random init | pixels | fine-tune: pretrained | random init "
           "| learns | min / run (fastest seed) |",
           "|" + "---|" * 13]
  for s in rows:
    learns = "yes" if s["meets_bar"] else f"no: {s['why']}"
    if len(s["seeds"]) < 3:
      learns += f" ({len(s['seeds'])} of 3 seeds)"
    lines.append("| " + " | ".join([
        s["objective"], ",".join(map(str, s["seeds"])), str(s["steps"]),
        _cell(s["pretrained_linear"]), _cell(s["random_linear"]), _cell(s["pixels_linear"]),
        _cell(s["pretrained_knn"]), _cell(s["random_knn"]), _cell(s["pixels_knn"]),
        _cell(s["finetune"]), _cell(s["random_finetune"]), learns,
        f"{s['wall_s'] / 60:.1f}"]) + " |")
  return "\n".join(lines) + "\n"


README_BEGIN = "<!-- learning table: benchmarks/learning.py --readme -->"
README_END = "<!-- end of learning table -->"


def write_readme(table: dict, readme: pathlib.Path = ROOT / "README.md") -> None:
  """Replaces the README's block between the two markers with the table."""
  common.write_table_block(README_BEGIN, README_END, markdown(table), table["machine"],
                           "benchmarks/learning.py", "benchmarks/results/learning_cpu.json",
                           units="Accuracies in %. ", readme=readme)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--objectives", default="", help="comma-separated; default: all")
  common.add_table_arguments(
      parser, seeds="0,1,2", out=DEFAULT_OUT, workdirs="mssl_learning",
      block="learning-table block",
      workdirs_help="where the runs' workdirs go (deleted row by row with --clean)")
  parser.add_argument("--steps", type=int, default=None,
                      help="pretraining steps instead of each recipe's (a shorter table)")
  parser.add_argument("--clean", action="store_true", help="delete each row's workdirs")
  args = parser.parse_args(argv)
  names = objectives()
  chosen = common.parse_names(parser, "--objectives", args.objectives, names,
                              word="registered") or names
  seeds = common.parse_seeds(parser, args.seeds)
  out = pathlib.Path(args.out)
  table = load(out)
  root = pathlib.Path(args.workdirs)
  if not args.table_only:
    jobs = [(o, seed, command_line(o, seed, args.steps)) for o in chosen for seed in seeds]
    common.run_rows(
        table, out, jobs, field="objective", save=save, rerun=args.rerun,
        machine=lambda: machine(),
        run=lambda objective, seed: run_row(objective, seed, root, args.steps),
        after=(lambda objective, seed: shutil.rmtree(root / f"{objective}_seed{seed}",
                                                     ignore_errors=True))
        if args.clean else None)
  common.write_outputs(out, table, markdown, write_readme, args.readme)
  return 0


if __name__ == "__main__":
  sys.exit(main())
