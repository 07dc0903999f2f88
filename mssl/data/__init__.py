"""Input pipelines (tf.data + tfds), SSL augmentations and the embedded dataset."""

from mssl.data.augment import PRESETS, ViewConfig, preset
from mssl.data.pipeline import (DatasetNotReadyError, InputIterator, Split, eval_dataset,
                                eval_num_batches, load_split, train_dataset)
from mssl.data.shapes import CLASSES as SHAPE_CLASSES

__all__ = ["DatasetNotReadyError", "InputIterator", "PRESETS", "SHAPE_CLASSES", "Split",
           "ViewConfig", "eval_dataset", "eval_num_batches", "load_split", "preset",
           "train_dataset"]
