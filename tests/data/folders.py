"""Image folders and streams the data tests share (tests/data/test_*.py): folders of
labelled PNG/JPEG files written into a test's tmp_path, and the first batches of a stream.
Imported as ``data.folders`` (conftest.py puts tests/ on the path)."""

import hashlib
import pathlib

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from mssl import data

from helpers import _photo


def train_stream(split, views="simclr_cifar", **kw):
  kw.setdefault("batch_size", 8)
  kw.setdefault("image_size", 32)
  return data.train_dataset(split, views=data.preset(views), **kw)


def first_batches(ds, n=1):
  it = iter(tfds.as_numpy(ds))
  return [next(it) for _ in range(n)]


def write_folder(root: pathlib.Path, labelled=True, count=6, size=40):
  rng = np.random.default_rng(0)
  for i in range(count):
    label = ("cats", "dogs")[i % 2]
    folder = root / "train" / label if labelled else root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size, size + 8 * (i % 2), 3), dtype=np.uint8)
    suffix = ".png" if i % 3 else ".jpg"
    PIL.Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")


COLOURS = {"a": (220, 40, 40), "b": (40, 220, 40), "c": (40, 40, 220), "d": (200, 200, 40)}


def write_classes(root: pathlib.Path, split: str, counts: dict, size: int = 8):
  """``counts[name]`` PNGs per class: the class's colour plus noise, each image distinct."""
  for name, count in counts.items():
    folder = root / split / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
      noise = np.random.default_rng([ord(name), i, len(split)]).integers(-30, 30,
                                                                         (size, size, 3))
      pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
      PIL.Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def contents(split):
  """``[(digest, label)]`` of a split's examples, in the order it yields them."""
  return [(digest(e["image"]), int(e["label"])) for e in tfds.as_numpy(split.dataset)]


def write_broken_images(root: pathlib.Path):
  """3 x 8 good PNGs; a truncated PNG and a text file named .png sorted last; a hidden
  macOS resource fork (ignored)."""
  write_classes(root, "train", {"a": 8, "b": 8, "c": 8})
  good = (root / "train" / "c" / "000.png").read_bytes()
  (root / "train" / "c" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
  (root / "train" / "c" / "zz_text.png").write_text("this is not an image\n")
  (root / "train" / "a" / "._000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")


def digest(image):
  return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def write_photos(root: pathlib.Path, suffixes=(".jpg", ".png"), count=8, size=(48, 64)):
  rng = np.random.default_rng(2)
  for i in range(count):
    folder = root / "train" / ("cats", "dogs")[i % 2]
    folder.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(_photo(rng, *size)).save(folder / f"{i:03d}{suffixes[i % len(suffixes)]}")
