"""What a source hands the pipelines: one process's shard of a split (:class:`Split`), and
the two ways data can disappoint a run (:class:`DatasetNotReadyError`, :class:`DataWarning`).

Sources: :mod:`mssl.data.tfds_source` and :mod:`mssl.data.image_folder`, chosen by
:mod:`mssl.data.sources`. Consumers: :mod:`mssl.data.pipeline` (training and evaluation
batches) and :mod:`mssl.data.cache` (what is kept in memory).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf


class DatasetNotReadyError(FileNotFoundError):
  """The dataset is not prepared in data_dir (and downloading was not asked for)."""


class DataWarning(UserWarning):
  """Something in the data that a run survives but a researcher should know about."""


@dataclasses.dataclass
class Split:
  """One process's shard of a split: examples ``{"image": uint8 HxWx3, "label": int64}``.

  With ``encoded`` the images are still encoded: examples ``{"image": tf.string (the
  file's bytes), "label": int64, "name": tf.string}`` (``name``: the file, or the tfds
  example id, for messages); the pipelines decode them. ``num_classes`` and
  ``class_names`` describe the dataset's labels, the same for every split of it (label
  ``i`` is ``class_names[i]``; -1 is unlabelled).
  """
  dataset: tf.data.Dataset
  num_examples: Optional[int]     # in this process's shard (None when unknown)
  total_examples: Optional[int]   # in the whole split
  num_classes: Optional[int]
  image_shape: Optional[tuple]    # (H, W, 3) when fixed
  class_names: Optional[tuple] = None
  decoded_bytes: Optional[int] = None  # this shard's uint8 pixels, when known
  skipped_files: tuple = ()       # "path (why)" of the files left out: they do not decode
  encoded: bool = False           # images are encoded bytes (see above)
  encoded_bytes: Optional[int] = None  # this shard's encoded images, when known
  strict: bool = False            # an image that fails to decode stops the run
  source: str = ""                # what the split is, for messages


def looks_grey(split: Split, sample: int = 32) -> bool:
  """Whether the first ``sample`` images of the split are grey (every pixel's three
  channels equal, as a one-channel PNG or JPEG decodes). Reads and decodes those images
  only; an image that does not decode is not looked at."""
  seen = 0
  for example in split.dataset.take(sample).ignore_errors():
    image = example["image"]
    if split.encoded:
      image = tf.io.decode_image(image, channels=3, expand_animations=False)
    image = image.numpy()
    if image.size and not (np.all(image[..., 0] == image[..., 1])
                           and np.all(image[..., 1] == image[..., 2])):
      return False
    seen += 1
  return seen > 0
