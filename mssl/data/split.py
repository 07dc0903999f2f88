"""What a source hands the pipelines: one process's shard of a split (:class:`Split`), and
the two ways data can disappoint a run (:class:`DatasetNotReadyError`, :class:`DataWarning`).

Sources: :mod:`mssl.data.tfds_source` and :mod:`mssl.data.image_folder`, chosen by
:mod:`mssl.data.sources`. Consumers: :mod:`mssl.data.pipeline` (training and evaluation
batches) and :mod:`mssl.data.cache` (what is kept in memory).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

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
