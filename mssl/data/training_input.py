"""A run's training input: this process's shard of the training split, the dataset
factory its loop restarts at any input position, the device half of the augmentation, and
the step counts that follow from the split's size.

With ``config.data.device_augment`` (the default) the host pipeline decodes, crops,
resizes and flips and sends uint8 views; :meth:`TrainingInput.augment_on_device` wraps a
trainer's step so that the colour operations of each view's preset run first, inside the
same jit, on the sharded global batch (:mod:`mssl.data.device_augment`). Their randomness
is folded from ``(seed, step, view, row of the global batch)``, so a resumed run draws
what an uninterrupted one would, whatever the sharding.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional

import jax

from mssl.data import cache, device_augment, pipeline, sources, views as views_lib
from mssl.data.split import DataWarning, looks_grey


@dataclasses.dataclass
class TrainingInput:
  """This process's training input and what follows from the dataset's size."""
  split: Any
  num_classes: int
  total_steps: int
  steps_per_epoch: int
  make_data: Any            # input position -> tf.data.Dataset of this process's batches
  # views -> float32 views (the device half of the augmentation), or None: the host did it
  device_views: Optional[Callable] = None

  def augment_on_device(self, train_step):
    """``train_step`` preceded, inside the same jit, by the device half of the
    augmentation (uint8 views -> augmented float32 views); unchanged without one."""
    if self.device_views is None:
      return train_step
    device_views = self.device_views

    def step(state, batch):
      views = device_views(batch["views"], state.step)
      return train_step(state, dict(batch, views=views))
    return step

  def run_info(self, **extra) -> dict:
    """What a run derives from its data, saved as ``run.json`` (with ``extra``)."""
    return {"num_classes": self.num_classes, "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch, **extra}


def training_input(config, data_config=None) -> TrainingInput:
  """The training split of ``data_config`` (default ``config.data``), sharded over
  processes, with the augmented-views dataset factory every trainer feeds its loop."""
  d = config.data if data_config is None else data_config
  process, count = jax.process_index(), jax.process_count()
  on_device = bool(d.get("device_augment", False))
  # With the colour work on the device, JPEG sources stay encoded until each example's
  # crop window is decoded (sources.load_split's ``encoded``).
  split = sources.load_split(d.dataset, d.train_split, data_dir=d.data_dir,
                              download=d.download, process_index=process,
                              process_count=count, train_split=d.train_split or "train",
                              strict=d.get("strict", False), encoded=on_device)
  total_steps, steps_per_epoch = steps(config, split.total_examples or config.batch_size)
  views = views_lib.preset(d.preset, **dict(d.preset_overrides))
  warn_colour_on_grey(d, views, split)
  crop_on_device = on_device and crops_on_device(d, split)
  device_views = None
  if on_device:
    # The config of each view the host emits: large views cycle the preset, small crops
    # too (their crop scale is SMALL_CROP_SCALE, wherever the crop is made).
    configs = tuple(views[v % len(views)] for v in range(d.num_views)) + tuple(
        views[s % len(views)] for s in range(d.num_small_crops))

    def device_views(uint8_views, step):
      if crop_on_device:  # one whole image per example: every view is made here
        uint8_views = tuple(uint8_views) * len(configs)
      return device_augment.augment_views(
          uint8_views, seed=config.seed, step=step, configs=configs,
          crop_on_device=crop_on_device, image_size=d.image_size, small_size=d.small_size,
          num_large=d.num_views)

  def make_data(position: int):
    return pipeline.train_dataset(
        split, batch_size=config.batch_size // count, image_size=d.image_size, views=views,
        num_views=d.num_views, seed=config.seed, process_index=process,
        start_batch=position, shuffle_buffer=d.shuffle_buffer, cache=d.cache,
        num_small_crops=d.num_small_crops, small_size=d.small_size,
        autotune=d.get("autotune", True), device_augment=on_device,
        crop_on_device=crop_on_device)
  return TrainingInput(split, split.num_classes or 1, total_steps, steps_per_epoch,
                       make_data, device_views)


def warn_colour_on_grey(data_config, views, split) -> None:
  """A :class:`~mssl.data.split.DataWarning` when the views change colour (saturation,
  hue, grayscale) but the split's images are grey: those operations then do nothing, and
  the preset was likely chosen for other data (flips and small crops may also cost what
  the classes differ by)."""
  operations = views_lib.colour_operations(views)
  if operations and looks_grey(split):
    warnings.warn(
        f"config.data.preset={data_config.preset!r} applies {', '.join(operations)} to "
        f"grey images (the first images of {split.source} have three equal channels): "
        "they leave grey images as they are. config.data.preset='grey_small' is made for "
        "grey, small images (no colour operations, no flips, crops of 50-100%); README, "
        "*Your own images*, measures both on a grey digit folder.", DataWarning,
        stacklevel=2)


# crop_on_device="auto" moves the crop onto the device for splits whose whole images are
# at most this many pixels (CIFAR's 32 x 32 and STL-10's 96 x 96 are; ImageNet's are not,
# and have no fixed shape) and are cached decoded.
CROP_ON_DEVICE_MAX_PIXELS = 128 * 128


def crops_on_device(data_config, split) -> bool:
  """Whether the crop, resize and flip run on the device too (``config.data
  .crop_on_device``: True, False or "auto"): only for a decoded split of fixed image
  shape; "auto" also asks for small images (``CROP_ON_DEVICE_MAX_PIXELS``) that are
  cached, so the host only shuffles and batches uint8 arrays."""
  wanted = data_config.get("crop_on_device", False)
  possible = split.image_shape is not None and not split.encoded
  if wanted == "auto":
    return bool(possible and split.image_shape[0] * split.image_shape[1]
                 <= CROP_ON_DEVICE_MAX_PIXELS
                 and cache.caches_decoded(split, data_config.cache))
  if wanted and not possible:
    raise ValueError(f"config.data.crop_on_device=True needs a dataset of fixed image "
                     f"shape, decoded; {data_config.dataset!r} has shape "
                     f"{split.image_shape}. Use 'auto' or False.")
  return bool(wanted)


def steps(config, num_examples: int) -> tuple[int, int]:
  steps_per_epoch = max(1, num_examples // config.batch_size)
  total = (config.total_steps if config.total_steps > 0
           else int(config.num_epochs * steps_per_epoch))
  return total, steps_per_epoch
