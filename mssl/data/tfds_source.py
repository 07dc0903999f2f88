"""tfds datasets as a source of splits: names, offline checks, and one process's shard.

A dataset is a tfds name, optionally with a config and version: ``cifar10``,
``imagenette/320px``, ``mssl_shapes/32`` (the embedded dataset, :mod:`mssl.data.shapes`,
generated locally on first use: it needs no network). It is read from ``data_dir``;
nothing is downloaded unless ``download=True``. The checks here are offline and cheap:
they read a prepared dataset's info and never build anything, so a config can be checked
before a run starts (:mod:`mssl.validation`).
"""

from __future__ import annotations

import difflib
import re
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from mssl.data import shapes  # registers the mssl_shapes builder
from mssl.data.split import DatasetNotReadyError, Split

EMBEDDED = "mssl_shapes"
# What a dataset name may be (the other source's form included), for messages.
USAGE = ("Use a name from `tfds.list_builders()`, 'mssl_shapes' (embedded) or "
         "'image_folder:PATH'.")

_NAME = re.compile(r"(?:(?P<namespace>\w+):)?(?P<base>\w+)(?:/(?P<config>[\w.-]+))?"
                   r"(?::(?P<version>[\d*.]+))?")


def is_embedded(name: str) -> bool:
  """Whether ``name`` is the embedded dataset (any of its configs)."""
  return name.split("/")[0] == EMBEDDED


def prepare_instructions(name: str, data_dir: str) -> str:
  """How to prepare ``name`` in ``data_dir``: the command to run, or ImageNet's manual
  download."""
  if name.split("/")[0] == "imagenet2012":
    return (f"ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {data_dir}/downloads/manual/ and run "
            f"`tfds build imagenet2012 --data_dir={data_dir}`.")
  return (f"Prepare it once with `tfds build {name} --data_dir={data_dir}` (needs network), "
          "or set config.data.download=True.")


def check_name(name: str) -> Optional[str]:
  """None when ``name`` is a registered tfds dataset (and config), else why not, with the
  closest registered names (difflib). Namespaced names (``ns:name``) pass as they are."""
  match = _NAME.fullmatch(name)
  if not match:
    return f"{name!r} is not a tfds dataset name (name[/config][:version]). {USAGE}"
  if match["namespace"]:
    return None
  base, config = match["base"], match["config"]
  known = tfds.list_builders(with_community_datasets=False)
  if base not in known:
    close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return f"unknown tfds dataset {name!r}.{hint} {USAGE}"
  configs = [c.name for c in (tfds.builder_cls(base).BUILDER_CONFIGS or ())]
  if config is not None and config not in configs:
    close = difflib.get_close_matches(config, configs, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(f'{base}/{c}' for c in close)}." if close else ""
    allowed = f"; its configs: {', '.join(configs)}" if configs else " (it has no configs)"
    return f"unknown config {config!r} of tfds dataset {base!r}{allowed}.{hint}"
  return None


def split_names(split: str) -> list:
  """The split names a tfds split expression reads: ``"train[:50%]+extra"`` ->
  ``["train", "extra"]``."""
  return [re.sub(r"\[.*\]\s*$", "", term).strip() for term in split.split("+")]


def prepared_builder(name: str, data_dir: Optional[str]):
  """The tfds builder of ``name`` when it is registered and prepared in ``data_dir`` (its
  info is then read offline, nothing is built), else None."""
  if check_name(name):
    return None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    return builder if builder.is_prepared() else None
  except Exception:  # not registered, not prepared: the dataset checks report it
    return None


def known_splits(name: str, data_dir: Optional[str]) -> Optional[list]:
  """The split names of ``name`` where they can be read offline (a prepared dataset's
  info, the embedded dataset's generator), else None."""
  if is_embedded(name) and not check_name(name):
    return sorted(shapes.SPLITS)
  builder = prepared_builder(name, data_dir)
  return sorted(builder.info.splits) if builder is not None else None


def num_classes(name: str, data_dir: Optional[str]) -> Optional[int]:
  """The class count of ``name``'s labels where it can be read offline, else None."""
  if is_embedded(name) and not check_name(name):
    return len(shapes.CLASSES)
  builder = prepared_builder(name, data_dir)
  if builder is None or "label" not in builder.info.features:
    return None
  return getattr(builder.info.features["label"], "num_classes", None)


def load(name: str, split: str, data_dir: Optional[str], download: bool,
         process_index: int, process_count: int, encoded: bool = False) -> Split:
  """One process's shard of ``split`` (``tfds.even_splits``); see
  :func:`mssl.data.sources.load_split`. Only JPEG image features stay ``encoded``: a crop
  of a PNG (cifar10, the embedded dataset) is decoded whole anyway, and those small
  fixed-shape splits are cached decoded."""
  problem = check_name(name)
  if problem:
    raise ValueError(f"config.data.dataset: {problem}")
  builder = tfds.builder(name, data_dir=data_dir)
  data_dir = str(builder.data_dir_root) if hasattr(builder, "data_dir_root") else data_dir
  if is_embedded(name) or download:
    if not builder.is_prepared():
      builder.download_and_prepare()
  shard = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 \
      else split
  features = builder.info.features
  encoded = encoded and getattr(features["image"], "encoding_format", None) == "jpeg"
  try:
    ds = builder.as_dataset(
        split=shard, shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()} if encoded else None,
        read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False,
                                    add_tfds_id=encoded))
  except AssertionError as e:  # tfds' "could not find data in ..."
    raise DatasetNotReadyError(
        f"dataset {name!r} (split {split!r}) was not found in data_dir {data_dir!r}. "
        + prepare_instructions(name, data_dir)) from e
  except ValueError as e:
    raise ValueError(f"config.data: bad split {split!r} for dataset {name!r}: {e}") from e
  ds = ds.map(lambda ex: {"image": ex["image"],
                          "label": tf.cast(ex.get("label", -1), tf.int64),
                          **({"name": ex["tfds_id"]} if encoded else {})},
              num_parallel_calls=tf.data.AUTOTUNE)
  label = features["label"] if "label" in features else None
  class_names = tuple(getattr(label, "names", None) or ()) or None
  image_shape = tuple(features["image"].shape)
  image_shape = image_shape if None not in image_shape else None

  def count(s):
    try:
      return int(builder.info.splits[s].num_examples) or None
    except (KeyError, ValueError, TypeError):
      return None

  def encoded_bytes():  # the shard's examples x the dataset's mean bytes per example
    try:
      infos = list(builder.info.splits.values())
      total = sum(int(i.num_bytes) for i in infos)
      examples = sum(int(i.num_examples) for i in infos)
    except (KeyError, ValueError, TypeError, AttributeError):
      return None
    shard_examples = count(shard)
    if not (total and examples and shard_examples):
      return None
    return int(total * shard_examples / examples)
  return Split(ds, count(shard), count(split), getattr(label, "num_classes", None),
               image_shape, class_names, encoded=encoded,
               encoded_bytes=encoded_bytes() if encoded else None,
               source=f"split {split!r} of dataset {name!r}")
