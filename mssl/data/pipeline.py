"""Training and evaluation pipelines: a :class:`~mssl.data.split.Split` -> per-process numpy
batches.

Each process reads a disjoint shard of the split (:mod:`mssl.data.sources`) and yields
batches of its share of the global batch; the trainer assembles them into one global
sharded array with ``jax.make_array_from_process_local_data``.

**Two training paths** (:func:`train_dataset`'s ``device_augment``):

* ``device_augment=False``: the host makes the whole view (:func:`augment.multi_view`):
  decode, crop, resize, flip, then every colour operation (jitter, grayscale, blur,
  solarize) in float32; views are float32 in [0, 1].
* ``device_augment=True``: the host decodes, crops, resizes and flips only
  (:func:`augment.multi_view_uint8`, the same seeds, hence the same windows and flips) and
  emits uint8 views, a quarter of the bytes; the colour operations run in the jitted step
  on the accelerator (:mod:`mssl.data.device_augment`). From an *encoded* split
  (``load_split(..., encoded=True)``: image folders, tfds datasets stored as JPEG) a
  JPEG's crop windows are drawn from its header and only the box holding them is
  decoded (``decode_and_crop_jpeg``).

What each path costs: ``benchmarks/input_pipeline.py`` and
``benchmarks/results/input_pipeline_cpu.json``. What is kept in memory:
:mod:`mssl.data.cache`. Images that fail to decode: :mod:`mssl.data.failures`.

**Determinism and resumption.** Training examples come from a seeded shuffle that repeats
with a fresh (seeded) order each epoch; the stream is enumerated *before* anything is
skipped, and every augmentation is drawn from a seed folded from ``(seed, process, index)``.
A pipeline rebuilt at ``start_batch = n`` therefore yields exactly the batches the original
would have yielded after ``n`` batches: :class:`InputIterator` records its position, which
is saved with each checkpoint. (Skipping re-reads, but does not decode or augment, the
examples before the position.)
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Optional, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from mssl.data import augment, cache as cache_lib, failures
from mssl.data.split import Split

# What an encoded JPEG's views decode (augment.multi_view_uint8): the box holding all of an
# example's crop windows, once ("union"); "window" (each view its own) and "whole" are
# there for benchmarks/input_pipeline.py to compare.
JPEG_DECODE = "union"


def options(autotune: bool = True) -> tf.data.Options:
  """Deterministic order, a private thread pool, and tf.data's autotuning on or off.

  With autotuning off, ``AUTOTUNE`` parallelism falls back to TF's default (the thread
  pool's size). Turning it off suits CPU-sized runs: deleting a long-lived iterator (at
  the end of training, after every evaluation) waits for the tuner's next round, which TF
  spaces up to 60 s apart.
  """
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
  options.autotune.enabled = autotune
  return options


def decoded(examples: tf.data.Dataset, split: Split) -> tf.data.Dataset:
  """An encoded split's ``examples`` (its dataset, or that cached) decoded whole (uint8
  ``(H, W, 3)``, ``name`` dropped); an image that does not decode is left out, by name
  (:mod:`mssl.data.failures`)."""
  return failures.map_reporting_failures(
      examples.enumerate(),
      lambda ex: {"image": augment.decode(ex["image"]), "label": ex["label"]},
      source=split.source, strict=split.strict)


def training_source(split: Split, cache, device_augment: bool) -> tuple:
  """``(examples, still_encoded)``: the split as :func:`train_dataset` starts from it,
  cached as ``cache`` says (:mod:`mssl.data.cache`).

  An encoded split is decoded before the shuffle, once, when its pixels are cached (a
  small folder of JPEGs then costs no decoding after the first epoch) or when the views
  are made on the host (``device_augment`` off, whose views need the whole image);
  otherwise it stays encoded (its bytes cached when they fit) and each example decodes
  the box holding its views' crops.
  """
  cache_pixels = cache_lib.caches_pixels(split, cache)
  if not split.encoded:
    return (split.dataset.cache() if cache_pixels else split.dataset), False
  ds = split.dataset.cache() if cache_lib.caches_encoded(split, cache) else split.dataset
  if cache_pixels or not device_augment:
    ds = decoded(ds, split)
    return (ds.cache() if cache_pixels else ds), False
  return ds, True


def train_dataset(split: Split, *, batch_size: int, image_size: int,
                  views: Sequence[augment.ViewConfig], num_views: int = 2, seed: int = 0,
                  process_index: int = 0, start_batch: int = 0, shuffle_buffer: int = 10_000,
                  cache="auto", num_small_crops: int = 0, small_size: int = 96,
                  autotune: bool = True, device_augment: bool = False,
                  crop_on_device: bool = False) -> tf.data.Dataset:
  """Infinite batches ``{"views": (V [+ small]) x (B, S, S, 3), "label": (B,)}``.

  ``crop_on_device=True`` (with ``device_augment``; a split of fixed image shape, e.g.
  CIFAR or the embedded dataset, best cached): nothing per pixel on the host at all. The
  batch is ``{"views": ((B, H, W, 3) uint8,), "label"}``, each example's whole image once,
  and the accelerator crops, resizes, flips and colours every view
  (``augment_views(..., crop_on_device=True)``).

  ``device_augment=False``: views float32 in [0, 1], every augmentation of ``views`` done
  here (:func:`augment.multi_view`). ``device_augment=True``: views uint8, cropped,
  resized and flipped here exactly as the float path would (same seeds, same windows),
  without the colour operations, which the accelerator then applies
  (:func:`mssl.data.device_augment.augment_views`, whose ``configs`` are ``views``
  cycled over the ``num_views`` large views, then over the small crops). An encoded
  split (``load_split(..., encoded=True)``) decodes, of a JPEG, only the box holding the
  example's crop windows (:func:`training_source` says when it is decoded whole and
  cached instead). A training-time decoding failure of an encoded image keeps its slot as
  a grey placeholder with label -1, reported by name. With an encoded split and
  ``device_augment=False`` the images are decoded whole before the float path, which then
  is the decoded split's.
  """
  if num_views < 1:
    raise ValueError(f"num_views must be at least 1; got {num_views}.")
  if crop_on_device and not (device_augment and split.image_shape is not None
                             and not split.encoded):
    raise ValueError("crop_on_device=True needs device_augment=True and a decoded split of "
                     f"fixed image shape; this split's shape is {split.image_shape} "
                     f"({'encoded' if split.encoded else 'decoded'}).")
  ds, encoded = training_source(split, cache, device_augment)
  process_seed = seed * 1_000_003 + process_index
  ds = ds.shuffle(shuffle_buffer, seed=process_seed, reshuffle_each_iteration=True).repeat()
  ds = ds.enumerate().skip(start_batch * batch_size)
  base = tf.constant([seed, process_index], tf.int64)

  if crop_on_device:
    ds = ds.map(lambda index, example: {"views": (example["image"],),
                                        "label": example["label"]},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  elif not device_augment:
    def make_views(index, example):
      views_out = augment.multi_view(example["image"], augment.fold_seed(base, index),
                                     views, num_views, image_size, num_small_crops,
                                     small_size)
      return {"views": views_out, "label": example["label"]}
    ds = ds.map(make_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  else:
    def make_uint8_views(example):
      views_out = augment.multi_view_uint8(
          example["image"], augment.fold_seed(base, example["index"]), views, num_views,
          image_size, num_small_crops, small_size, encoded=encoded, jpeg_decode=JPEG_DECODE)
      return {"views": views_out, "label": example["label"]}
    if not encoded:
      ds = ds.map(lambda index, example: make_uint8_views({**example, "index": index}),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
      sizes = [image_size] * num_views + [small_size] * num_small_crops

      def placeholder():
        return {"views": tuple(tf.fill([s, s, 3], tf.constant(128, tf.uint8)) for s in sizes),
                "label": tf.constant(-1, tf.int64)}
      ds = ds.map(lambda index, example: (index, {**example, "index": index}))
      ds = failures.map_reporting_failures(
          ds, make_uint8_views, source=split.source, strict=split.strict,
          first_index=start_batch * batch_size, placeholder=placeholder)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(options(autotune))


def eval_dataset(split: Split, *, batch_size: int, image_size: int,
                 crop_fraction: float = 0.875, num_batches: Optional[int] = None,
                 autotune: bool = True) -> tf.data.Dataset:
  """One pass of ``{"image": (B, S, S, 3), "label": (B,), "mask": (B,)}`` batches.

  The last batch is padded (``mask = 0``). ``num_batches`` pads with empty batches up to a
  fixed count, so that every process runs the same number of steps. Images are float32 in
  [0, 1] from every split: an encoded one is decoded whole first (an image that does not
  decode is left out, by name). Evaluation reads each image once per pass, off the
  training hot path, so it keeps the simpler float pipeline.
  """
  source = decoded(split.dataset, split) if split.encoded else split.dataset
  ds = source.map(
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
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options(autotune))


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
