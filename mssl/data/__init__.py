"""Input pipelines (tf.data + tfds), SSL augmentations and the embedded dataset."""

from mssl.data.augment import PRESETS, ViewConfig, preset
from mssl.data.pipeline import (DatasetNotReadyError, DataWarning, InputIterator, Split,
                                check_dataset_name, eval_dataset, eval_num_batches,
                                folder_class_names, load_split, train_dataset)
from mssl.data.shapes import CLASSES as SHAPE_CLASSES

__all__ = ["DataWarning", "DatasetNotReadyError", "InputIterator", "PRESETS",
           "SHAPE_CLASSES", "Split", "ViewConfig", "check_dataset_name", "eval_dataset",
           "eval_num_batches", "folder_class_names", "load_split", "preset",
           "train_dataset"]
