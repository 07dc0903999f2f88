"""Input pipelines: tfds datasets or image folders -> per-process numpy batches.

Each process reads a disjoint shard of the split (``process_index`` of ``process_count``)
and yields batches of its share of the global batch; the trainer assembles them into one
global sharded array with ``jax.make_array_from_process_local_data``.

Datasets (``dataset`` argument):

* a tfds name, optionally with a config: ``cifar10``, ``cifar100``, ``stl10``,
  ``imagenet2012``, ``imagenette/320px``, ``mssl_shapes/32`` (the embedded dataset);
  read from ``data_dir``. Nothing is downloaded unless ``download=True`` (the embedded
  dataset is generated locally when missing: it needs no network).
* ``image_folder:PATH``: ``PATH/<split>/<label>/*.{png,jpg,jpeg}`` (tfds ImageFolder
  layout); ``PATH/<split>/*.png`` without label folders is read as unlabelled (label -1).

**Determinism and resumption.** Training examples come from a seeded shuffle that repeats
with a fresh (seeded) order each epoch; the stream is enumerated *before* anything is
skipped, and every augmentation is drawn from a seed folded from ``(seed, process, index)``.
A pipeline rebuilt at ``start_batch = n`` therefore yields exactly the batches the original
would have yielded after ``n`` batches: :class:`InputIterator` records its position, which
is saved with each checkpoint. (Skipping re-reads, but does not decode or augment, the
examples before the position.)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mssl.data import augment
from mssl.data import shapes  # noqa: F401  (registers the mssl_shapes builder)

FOLDER_PREFIX = "image_folder:"
EMBEDDED = "mssl_shapes"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
# Cache decoded images in memory below this many bytes of uint8 pixels.
CACHE_LIMIT_BYTES = 2 * 2 ** 30


class DatasetNotReadyError(FileNotFoundError):
  """The dataset is not prepared in data_dir (and downloading was not asked for)."""


@dataclasses.dataclass
class Split:
  """One process's shard of a split: examples ``{"image": uint8 HxWx3, "label": int64}``."""
  dataset: tf.data.Dataset
  num_examples: Optional[int]     # in this process's shard (None when unknown)
  total_examples: Optional[int]   # in the whole split
  num_classes: Optional[int]
  image_shape: Optional[tuple]    # (H, W, 3) when fixed


def _prepare_instructions(name: str, data_dir: str) -> str:
  base = name.split("/")[0]
  if base == "imagenet2012":
    return (f"ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {data_dir}/downloads/manual/ and run "
            f"`tfds build imagenet2012 --data_dir={data_dir}`.")
  return (f"Prepare it once with `tfds build {name} --data_dir={data_dir}` (needs network), "
          "or set config.data.download=True.")


def _load_tfds(name: str, split: str, data_dir: Optional[str], download: bool,
               process_index: int, process_count: int) -> Split:
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"config.data.dataset: unknown tfds dataset {name!r}. Use a name from "
                     "`tfds.list_builders()`, 'mssl_shapes' (embedded) or "
                     "'image_folder:PATH'.") from e
  data_dir = str(builder.data_dir_root) if hasattr(builder, "data_dir_root") else data_dir
  if name.split("/")[0] == EMBEDDED or download:
    if not builder.is_prepared():
      builder.download_and_prepare()
  shard = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 \
      else split
  try:
    ds = builder.as_dataset(split=shard, shuffle_files=False,
                            read_config=tfds.ReadConfig(shuffle_seed=0,
                                                        try_autocache=False))
  except AssertionError as e:  # tfds' "could not find data in ..."
    raise DatasetNotReadyError(
        f"dataset {name!r} (split {split!r}) was not found in data_dir {data_dir!r}. "
        + _prepare_instructions(name, data_dir)) from e
  except ValueError as e:
    raise ValueError(f"config.data: bad split {split!r} for dataset {name!r}: {e}") from e
  features = builder.info.features
  ds = ds.map(lambda ex: {"image": ex["image"],
                          "label": tf.cast(ex.get("label", -1), tf.int64)},
              num_parallel_calls=tf.data.AUTOTUNE)
  num_classes = getattr(features["label"], "num_classes", None) if "label" in features \
      else None
  image_shape = tuple(features["image"].shape)
  image_shape = image_shape if None not in image_shape else None

  def count(s):
    try:
      return int(builder.info.splits[s].num_examples) or None
    except (KeyError, ValueError, TypeError):
      return None
  return Split(ds, count(shard), count(split), num_classes, image_shape)


def _check_image_file(path: pathlib.Path) -> bool:
  with open(path, "rb") as f:
    head = f.read(8)
  return any(head.startswith(m) for m in _MAGIC)


def _load_folder(root: str, split: str, process_index: int, process_count: int) -> Split:
  limit = None
  match = re.fullmatch(r"(\w+)\[:(\d+)\]", split)
  if match:  # "train[:N]": the first N files (in sorted order)
    split, limit = match.group(1), int(match.group(2))
  split_dir = pathlib.Path(root) / split
  if not split_dir.is_dir():
    raise DatasetNotReadyError(
        f"image folder split {str(split_dir)!r} does not exist. Expected the layout "
        f"{root}/<split>/<label>/*.png (or .jpg), e.g. {root}/train/cat/0001.png.")
  class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
  if class_dirs:
    files = [(str(f), label) for label, d in enumerate(class_dirs)
             for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
  else:
    files = [(str(f), -1) for f in sorted(split_dir.iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
  if not files:
    raise ValueError(f"image folder {str(split_dir)!r} holds no images (*.png, *.jpg, "
                     "*.jpeg), neither directly nor in label folders.")
  files = files[:limit]
  bad = [f for f, _ in files if not _check_image_file(pathlib.Path(f))]
  if bad:
    raise ValueError(f"{len(bad)} file(s) in {str(split_dir)!r} are not readable PNG/JPEG "
                     f"images, e.g. {bad[:3]}. Remove or convert them.")
  shard = files[process_index::process_count]
  paths = tf.constant([f for f, _ in shard])
  labels = tf.constant([label for _, label in shard], tf.int64)

  def decode(path, label):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return {"image": image, "label": label}
  ds = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return Split(ds, len(shard), len(files), len(class_dirs) or None, None)


def load_split(dataset: str, split: str, *, data_dir: Optional[str] = None,
               download: bool = False, process_index: int = 0,
               process_count: int = 1) -> Split:
  """One process's shard of ``dataset``'s ``split`` (see the module docstring)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}.")
  if dataset.startswith(FOLDER_PREFIX):
    return _load_folder(dataset[len(FOLDER_PREFIX):], split, process_index, process_count)
  return _load_tfds(dataset, split, data_dir, download, process_index, process_count)


def _options(autotune: bool = True) -> tf.data.Options:
  """Deterministic order, a private thread pool, and tf.data's autotuning on or off.

  With autotuning off, ``AUTOTUNE`` parallelism falls back to TF's default (the thread
  pool's size). Turning it off suits CPU-sized runs: deleting a long-lived iterator (at
  the end of training, after every evaluation) waits for the tuner's next round, which TF
  spaces up to 60 s apart (measured: 44 s at the end of the quickstart, none without it).
  """
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
  options.autotune.enabled = autotune
  return options


CACHE_MODES = ("auto", "always", "never")


def _should_cache(split: Split, cache) -> bool:
  """``cache``: "always", "never", or "auto" (when the decoded split fits in memory)."""
  if cache not in CACHE_MODES and not isinstance(cache, bool):
    raise ValueError(f"cache must be one of {CACHE_MODES}; got {cache!r}.")
  if cache != "auto":
    return cache in (True, "always")
  if split.num_examples is None or split.image_shape is None:
    return False
  return split.num_examples * int(np.prod(split.image_shape)) < CACHE_LIMIT_BYTES


def train_dataset(split: Split, *, batch_size: int, image_size: int,
                  views: Sequence[augment.ViewConfig], num_views: int = 2, seed: int = 0,
                  process_index: int = 0, start_batch: int = 0, shuffle_buffer: int = 10_000,
                  cache="auto", num_small_crops: int = 0,
                  small_size: int = 96, autotune: bool = True) -> tf.data.Dataset:
  """Infinite batches ``{"views": (V [+ small]) x (B, S, S, 3) float32, "label": (B,)}``."""
  if num_views < 1:
    raise ValueError(f"num_views must be at least 1; got {num_views}.")
  ds = split.dataset
  if _should_cache(split, cache):
    ds = ds.cache()
  process_seed = seed * 1_000_003 + process_index
  ds = ds.shuffle(shuffle_buffer, seed=process_seed, reshuffle_each_iteration=True).repeat()
  ds = ds.enumerate().skip(start_batch * batch_size)
  base = tf.constant([seed, process_index], tf.int64)

  def make_views(index, example):
    views_out = augment.multi_view(example["image"], augment.fold_seed(base, index), views,
                                   num_views, image_size, num_small_crops, small_size)
    return {"views": views_out, "label": example["label"]}
  ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options(autotune))


def eval_dataset(split: Split, *, batch_size: int, image_size: int,
                 crop_fraction: float = 0.875, num_batches: Optional[int] = None,
                 autotune: bool = True) -> tf.data.Dataset:
  """One pass of ``{"image": (B, S, S, 3), "label": (B,), "mask": (B,)}`` batches.

  The last batch is padded (``mask = 0``). ``num_batches`` pads with empty batches up to a
  fixed count, so that every process runs the same number of steps.
  """
  ds = split.dataset.map(
      lambda ex: {"image": augment.center_crop(ex["image"], image_size, crop_fraction),
                  "label": ex["label"], "mask": tf.constant(1.0)},
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  padding = tf.data.Dataset.from_tensors({
      "image": tf.zeros([image_size, image_size, 3]), "label": tf.constant(-1, tf.int64),
      "mask": tf.constant(0.0)}).repeat()
  if num_batches is None:
    count = split.num_examples
    if count is None:
      count = int(ds.reduce(0, lambda n, _: n + 1))
    num_batches = -(-count // batch_size)
  ds = ds.concatenate(padding).take(num_batches * batch_size)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options(autotune))


def eval_num_batches(total_examples: int, process_count: int, batch_size: int) -> int:
  """Batches each process runs so that every shard (sizes differ by <= 1) is covered."""
  per_process = -(-total_examples // process_count)
  return -(-per_process // batch_size)


class InputIterator(Iterator):
  """Numpy batches from a dataset rebuilt at any position; ``position`` = batches seen."""

  def __init__(self, make_dataset: Callable[[int], tf.data.Dataset], position: int = 0):
    self._make = make_dataset
    self.position = position
    self._iterator = iter(tfds.as_numpy(make_dataset(position)))

  def __next__(self):
    batch = next(self._iterator)
    self.position += 1
    return batch

  def get_state(self) -> dict:
    return {"position": self.position}

  @classmethod
  def restore(cls, make_dataset, state: dict) -> "InputIterator":
    return cls(make_dataset, int(state["position"]))
