"""Input: datasets and tf.data pipelines (TensorFlow), view presets and device-side
augmentation (no TensorFlow).

The host side, in the order data flows: ``split`` (what a source hands on),
``tfds_source`` and ``image_folder`` (the two sources), ``sources`` (a dataset name -> its
source), ``failures`` (images that do not decode), ``cache`` (what stays in memory),
``augment`` (host views) and ``pipeline`` (training and evaluation batches).
``mssl.data.views`` and ``mssl.data.device_augment`` import without TensorFlow; the names
below (``load_split``, ``train_dataset``, ...) import it on first use, so a jitted step
that only augments on the device never loads tf.data.
"""

import importlib

from mssl.data.views import PRESETS, SMALL_CROP_SCALE, ViewConfig, preset

# name -> the module that defines it (each imports TensorFlow)
_TF_NAMES = {
    "DatasetNotReadyError": "split", "DataWarning": "split", "Split": "split",
    "check_dataset_name": "sources", "check_split": "sources",
    "dataset_num_classes": "sources", "load_split": "sources",
    "InputIterator": "pipeline", "eval_dataset": "pipeline",
    "eval_num_batches": "pipeline", "train_dataset": "pipeline",
}
_TF_MODULES = ("augment", "cache", "failures", "image_folder", "pipeline", "shapes",
               "sources", "split", "tfds_source")

__all__ = ["PRESETS", "SHAPE_CLASSES", "SMALL_CROP_SCALE", "ViewConfig", "preset",
           *_TF_NAMES]


def __getattr__(name):
  if name in _TF_NAMES:
    return getattr(importlib.import_module(f"mssl.data.{_TF_NAMES[name]}"), name)
  if name == "SHAPE_CLASSES":
    return importlib.import_module("mssl.data.shapes").CLASSES
  if name in _TF_MODULES:
    return importlib.import_module(f"mssl.data.{name}")
  raise AttributeError(f"module 'mssl.data' has no attribute {name!r}")
