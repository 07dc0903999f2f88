"""Input: datasets and tf.data pipelines (TensorFlow), view presets and device-side
augmentation (no TensorFlow).

``mssl.data.views`` and ``mssl.data.device_augment`` import without TensorFlow; the
pipeline names below (``load_split``, ``train_dataset``, ...) import it on first use, so
a jitted step that only augments on the device never loads tf.data.
"""

import importlib

from mssl.data.views import PRESETS, SMALL_CROP_SCALE, ViewConfig, preset

_PIPELINE = ("DatasetNotReadyError", "DataWarning", "InputIterator", "Split",
             "check_dataset_name", "eval_dataset", "eval_num_batches",
             "folder_class_names", "load_split", "train_dataset")

__all__ = ["PRESETS", "SHAPE_CLASSES", "SMALL_CROP_SCALE", "ViewConfig", "preset",
           *_PIPELINE]


def __getattr__(name):
  if name in _PIPELINE:
    return getattr(importlib.import_module("mssl.data.pipeline"), name)
  if name == "SHAPE_CLASSES":
    return importlib.import_module("mssl.data.shapes").CLASSES
  if name in ("augment", "pipeline", "shapes"):
    return importlib.import_module(f"mssl.data.{name}")
  raise AttributeError(f"module 'mssl.data' has no attribute {name!r}")
