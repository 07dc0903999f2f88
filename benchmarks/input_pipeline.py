"""Input-pipeline throughput (a benchmark, not a test).

    python benchmarks/input_pipeline.py --out benchmarks/results/input_pipeline.json

Measures images/second per view of the training pipeline (decode, two augmented views,
batching) on this machine for

* the embedded dataset at 32 x 32 (``mocov3_cifar`` preset, the quickstart's), and
* 224 x 224 ImageNet-style crops (``mocov3`` preset, with blur and solarize) from an image
  folder of 320 x 256 JPEGs that the benchmark writes,

and, with ``--compare-step``, the forward+backward throughput of the quickstart's encoder
(ResNet-18, CIFAR stem) at the same batch, to report the pipeline / step ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from mssl import data  # noqa: E402


def throughput(split, preset, image_size, batch, batches, warmup=5):
  ds = data.train_dataset(split, batch_size=batch, image_size=image_size,
                          views=data.preset(preset), num_views=2)
  it = iter(tfds.as_numpy(ds))
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches * batch / (time.perf_counter() - start)


def write_folder(root, count=256):
  rng = np.random.default_rng(0)
  for i in range(count):
    folder = os.path.join(root, "train", f"class{i % 4}")
    os.makedirs(folder, exist_ok=True)
    pixels = rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)
    PIL.Image.fromarray(pixels).save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=None)
  parser.add_argument("--data-dir", default=None, help="tfds data_dir for mssl_shapes")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--compare-step", action="store_true")
  args = parser.parse_args(argv)
  rows = []
  shapes_split = data.load_split("mssl_shapes/32", "train", data_dir=args.data_dir)
  rows.append({"pipeline": "mssl_shapes 32px mocov3_cifar", "batch": args.batch,
               "images_per_s_per_view": throughput(shapes_split, "mocov3_cifar", 32,
                                                   args.batch, args.batches)})
  with tempfile.TemporaryDirectory() as root:
    write_folder(root)
    folder = data.load_split(f"image_folder:{root}", "train")
    rows.append({"pipeline": "image_folder 224px mocov3 (jpeg 320x256)", "batch": 32,
                 "images_per_s_per_view": throughput(folder, "mocov3", 224, 32,
                                                     max(4, args.batches // 4))})
  result = {"machine": common.machine(), "rows": rows}
  if args.compare_step:
    import models as model_bench  # benchmarks/models.py
    step = model_bench.main(["--only", "resnet18_cifar", "--dtypes", "float32",
                             "--batch", str(2 * args.batch)])[0]
    # A two-view step processes 2 x batch images: compare per-view image rates.
    step_rate = step["images_per_s"] / 2
    result["train_step_images_per_s_per_view"] = step_rate
    result["pipeline_over_step"] = rows[0]["images_per_s_per_view"] / step_rate
  common.print_table(rows, ["pipeline", "batch", "images_per_s_per_view"])
  if "pipeline_over_step" in result:
    print(f"pipeline / train-step throughput (ResNet-18 CIFAR, fwd+bwd): "
          f"{result['pipeline_over_step']:.1f}x")
  common.write_json(args.out, result)


if __name__ == "__main__":
  main()
