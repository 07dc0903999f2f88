"""Does the quickstart recipe beat raw pixels on an image folder a user brings?

    python benchmarks/image_folder.py                        # grey digits, seeds 0 and 1
    python benchmarks/image_folder.py --folder PATH --size 28 --variants recipe
    python benchmarks/image_folder.py --table-only --readme  # JSON -> README table

Each row pretrains the quickstart (``configs/quickstart.py``) on ``image_folder:FOLDER``
with only the dataset, the image size and the step count changed (``recipe``), or with a
documented change for such data (``grey``: ``configs/quickstart.py:grey``, the
``grey_small`` views; ``width16``: a ResNet twice as wide, 128 features instead of 64),
then evaluates it beside random initialisation and the raw pixels (a logistic regression
and a kNN on the pixels themselves). Without ``--folder`` the folder is written by
``mssl.data.glyphs`` (ten hand-drawn-looking digits, grey, 600 training and 100 test
images a class at 28 px; nothing is downloaded). Writes
``benchmarks/results/image_folder_cpu.json`` (``{"machine", "rows"}``, a row per variant
and seed, the exact command in ``config``) and a markdown table beside it; resumes a
partly written file.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (benchmarks/common.py)

ROOT = common.ROOT
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "image_folder_cpu.json"
STEPS = 1000
# variant -> (quickstart config words, further flags)
VARIANTS = {
    "recipe": ("", []),
    "grey": ("grey", []),
    "width16": ("", ["--config.model.width=16"]),
}
GLYPHS = "glyphs (mssl.data.glyphs: 10 grey digits, 600 / 100 images a class, 28 px)"


def commands(variant: str, seed: int, folder: str, size: int, steps: int,
             workdir: str) -> list[str]:
  words, flags = VARIANTS[variant]
  return [f"--config=configs/quickstart.py{':' + words if words else ''}",
          f"--workdir={workdir}", f"--config.data.dataset=image_folder:{folder}",
          f"--config.data.image_size={size}", f"--config.total_steps={steps}",
          f"--config.seed={seed}", "--config.eval.embedding_plot=none", *flags]


def run_row(variant: str, seed: int, folder: str, size: int, steps: int,
            dataset: str, root: pathlib.Path) -> dict:
  workdir = root / f"{variant}_seed{seed}"
  shutil.rmtree(workdir, ignore_errors=True)  # a half-finished row starts again
  workdir.mkdir(parents=True)
  with open(workdir / "log.txt", "w") as log:
    wall = common.run_main(commands(variant, seed, folder, size, steps,
                                    str(workdir / "run")), log)
  results = common.load_results(workdir / "run")
  return dict(variant=variant, dataset=dataset,
              config=common.command_text(commands(variant, seed, folder, size, steps,
                                                  "$WORKDIR")),
              seed=seed, steps=int(results["steps"]), wall_s=round(wall, 1),
              pretrained_linear=results.get("pretrained/linear_probe"),
              pretrained_knn=results.get("pretrained/knn"),
              random_linear=results.get("random_init/linear_probe"),
              random_knn=results.get("random_init/knn"),
              pixels_linear=results.get("pixels/linear_probe"),
              pixels_knn=results.get("pixels/knn"))


def markdown(table: dict) -> str:
  """Mean [min, max] over seeds per variant, beside random initialisation and pixels."""
  lines = ["| variant | seeds | pretrained linear | pretrained kNN | random init linear / "
           "kNN | raw pixels linear / kNN | beats the pixels' linear probe |",
           "|---|---|---|---|---|---|---|"]
  for variant in dict.fromkeys(r["variant"] for r in table["rows"]):
    rows = [r for r in table["rows"] if r["variant"] == variant]

    def cell(key):
      mean, low, high = common.mean_range(100 * r[key] for r in rows)
      return f"{mean:.2f}%" + (f" [{low:.2f}, {high:.2f}]" if len(rows) > 1 else "")
    beats = sum(r["pretrained_linear"] > r["pixels_linear"] for r in rows)
    lines.append(f"| `{variant}` | {len(rows)} | {cell('pretrained_linear')} | "
                 f"{cell('pretrained_knn')} | {cell('random_linear')} / "
                 f"{cell('random_knn')} | {cell('pixels_linear')} / {cell('pixels_knn')} | "
                 f"{beats} of {len(rows)} seeds |")
  datasets = sorted({r["dataset"] for r in table["rows"]})
  return "\n".join(lines) + f"\n\nData: {'; '.join(datasets)}.\n"


README_BEGIN = "<!-- image-folder table: benchmarks/image_folder.py --readme -->"
README_END = "<!-- end of image-folder table -->"


def write_readme(table: dict, readme: pathlib.Path = ROOT / "README.md") -> None:
  common.write_table_block(README_BEGIN, README_END, markdown(table), table["machine"],
                           "benchmarks/image_folder.py",
                           "benchmarks/results/image_folder_cpu.json", readme=readme)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--folder", default=None,
                      help="an image folder (PATH/<split>/<class>/*.png) with train and "
                           "test splits; default: the glyph digits, written once")
  parser.add_argument("--size", type=int, default=28, help="config.data.image_size")
  parser.add_argument("--steps", type=int, default=STEPS)
  parser.add_argument("--variants", default="recipe,grey,width16")
  common.add_table_arguments(parser, seeds="0,1", out=DEFAULT_OUT,
                             workdirs="mssl_image_folder", block="image-folder block")
  args = parser.parse_args(argv)
  variants = common.parse_names(parser, "--variants", args.variants, VARIANTS)
  seeds = common.parse_seeds(parser, args.seeds)
  out = pathlib.Path(args.out)
  table = common.load_table(out)
  root = pathlib.Path(args.workdirs)
  if not args.table_only:
    folder, dataset = args.folder, f"image folder {args.folder}"
    if folder is None:
      from mssl.data import glyphs
      folder, dataset = str(root / "glyphs"), GLYPHS
      if not (root / "glyphs" / "test").is_dir():
        glyphs.write_folder(folder, size=args.size)
    jobs = [(v, seed, common.command_text(commands(v, seed, folder, args.size, args.steps,
                                                   "$WORKDIR")))
            for v in variants for seed in seeds]
    common.run_rows(table, out, jobs, field="variant", save=common.save_table,
                    rerun=args.rerun,
                    run=lambda v, seed: run_row(v, seed, folder, args.size, args.steps,
                                                dataset, root))
  common.write_outputs(out, table, markdown, write_readme, args.readme)
  return 0


if __name__ == "__main__":
  sys.exit(main())
