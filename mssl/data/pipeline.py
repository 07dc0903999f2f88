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
  Hidden files and folders (``.ipynb_checkpoints``, macOS ``._x.png``) are ignored.

**Image folders** follow tfds' conventions where they can:

* *One class list per dataset.* Label ids index the sorted label folders of the training
  split (``train_split``, default ``train``), the same for every split
  (:func:`folder_class_names`, ``Split.class_names``). A split holding a class the
  training split lacks is an error naming it; a dataset of one class is a
  :class:`DataWarning` (probes score 100% on it whatever the encoder learns).
* *Slices hold every class in proportion.* Splits take tfds' slice syntax
  (``train[:5000]``, ``train[:50%]``, ``train[10:70]``, ``test[-500:]``, joined by ``+``).
  Slicing happens on a fixed order: within a label folder files are sorted by a hash
  (md5) of their name, so the order is deterministic, independent of the process count,
  and unrelated to file naming; the label folders are then interleaved in proportion to
  their sizes, so every contiguous slice, and every process's shard of it (contiguous
  blocks of near-equal size, as ``tfds.even_splits``), holds each class in proportion
  (within about one example). Slices with the same boundaries therefore complement each
  other exactly (``[:50%]`` and ``[50%:]``; ``[10:70]`` is ``[:70]`` without ``[:10]``).
* *Unreadable images are skipped, by name.* Every selected file is checked once when the
  split is loaded (its header and end marker: a PNG's IEND chunk, a JPEG's EOI; a file
  that does not look whole is decoded to be sure). Files that do not decode are left out
  with a :class:`DataWarning` naming each one and the count, or, with ``strict=True``, the
  load raises a ``ValueError`` listing them, before any training. A file that still fails
  to decode later (changed after the check, damaged inside) is skipped with a warning
  naming it instead of ending the run (with ``strict=True`` the run stops, naming it). In
  an encoded split decoded by the training views, such an image keeps its slot in the
  stream as a grey placeholder with label -1 (so that resumption stays exact).
* *Small folders are cached decoded*: ``cache="auto"`` keeps a split in memory when its
  decoded pixels (from the image headers) are below ``CACHE_LIMIT_BYTES`` (2 GiB per
  process), as for tfds datasets of known shape. An encoded split is then decoded once,
  whole, and cached decoded; above the limit ``"auto"`` keeps its encoded bytes in memory
  when those fit (file sizes; tfds: the dataset's bytes per example), saving the reads,
  and each view decodes its crop every epoch.

**Two training paths** (:func:`train_dataset`'s ``device_augment``):

* ``device_augment=False``: the host makes the whole view (:func:`augment.multi_view`):
  decode, crop, resize, flip, then every colour operation (jitter, grayscale, blur,
  solarize) in float32; views are float32 in [0, 1]. Measured on the 2-core CPU for two
  224 px ``mocov3`` views of 500 x 375 JPEGs: ~30 ms of CPU per example, most of it colour.
* ``device_augment=True``: the host decodes, crops, resizes and flips only
  (:func:`augment.multi_view_uint8`, the same seeds, hence the same windows and flips) and
  emits uint8 views, a quarter of the bytes; the colour operations run in the jitted step
  on the accelerator (:mod:`mssl.data.device_augment`). From an *encoded* split
  (``load_split(..., encoded=True)``: image folders, tfds datasets stored as JPEG) a
  JPEG's crop windows are drawn from its header and only the box holding them is
  decoded (``decode_and_crop_jpeg``). ~5 ms of CPU per example as above, 5-6x fewer;
  what is left is mostly the antialiased bicubic resize (~1.5 ms a view) and the decode
  (~0.8 ms). ``benchmarks/results/input_pipeline_cpu.json`` has the measurements.

**Determinism and resumption.** Training examples come from a seeded shuffle that repeats
with a fresh (seeded) order each epoch; the stream is enumerated *before* anything is
skipped, and every augmentation is drawn from a seed folded from ``(seed, process, index)``.
A pipeline rebuilt at ``start_batch = n`` therefore yields exactly the batches the original
would have yielded after ``n`` batches: :class:`InputIterator` records its position, which
is saved with each checkpoint. (Skipping re-reads, but does not decode or augment, the
examples before the position.)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import hashlib
import os
import pathlib
import re
import struct
import warnings
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
# cache="auto" keeps a process's decoded split in memory below this many bytes of uint8
# pixels (tfds datasets of fixed shape and image folders alike).
CACHE_LIMIT_BYTES = 2 * 2 ** 30
# What an encoded JPEG's views decode (augment.multi_view_uint8): the box holding all of an
# example's crop windows, once ("union"); "window" (each view its own) and "whole" are
# there for benchmarks/input_pipeline.py to compare.
JPEG_DECODE = "union"


class DatasetNotReadyError(FileNotFoundError):
  """The dataset is not prepared in data_dir (and downloading was not asked for)."""


@dataclasses.dataclass
class Split:
  """One process's shard of a split: examples ``{"image": uint8 HxWx3, "label": int64}``.

  With ``encoded`` the images are still encoded: examples ``{"image": tf.string (the
  file's bytes), "label": int64, "name": tf.string}`` (``name``: the file, or the tfds
  example id, for messages); :func:`train_dataset` and :func:`eval_dataset` decode them.
  ``num_classes`` and ``class_names`` describe the dataset's labels, the same for every
  split of it (label ``i`` is ``class_names[i]``; -1 is unlabelled).
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


def _prepare_instructions(name: str, data_dir: str) -> str:
  base = name.split("/")[0]
  if base == "imagenet2012":
    return (f"ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {data_dir}/downloads/manual/ and run "
            f"`tfds build imagenet2012 --data_dir={data_dir}`.")
  return (f"Prepare it once with `tfds build {name} --data_dir={data_dir}` (needs network), "
          "or set config.data.download=True.")


_TFDS_NAME = re.compile(r"(?:(?P<namespace>\w+):)?(?P<base>\w+)(?:/(?P<config>[\w.-]+))?"
                        r"(?::(?P<version>[\d*.]+))?")


def check_dataset_name(name: str) -> Optional[str]:
  """None when ``name`` names a dataset :func:`load_split` knows, else why not.

  ``image_folder:PATH`` and namespaced tfds names (``ns:name``) are accepted as they are
  (the folder's existence is checked when it is loaded); a tfds name must be registered
  (``tfds.list_builders()``, the embedded ``mssl_shapes`` included), and so must its
  config. The message names the closest registered names (difflib). Offline and cheap:
  nothing is built or read.
  """
  if name.startswith(FOLDER_PREFIX):
    return None
  usage = ("Use a name from `tfds.list_builders()`, 'mssl_shapes' (embedded) or "
           "'image_folder:PATH'.")
  match = _TFDS_NAME.fullmatch(name)
  if not match:
    return f"{name!r} is not a tfds dataset name (name[/config][:version]). {usage}"
  if match["namespace"]:
    return None
  base, config = match["base"], match["config"]
  known = tfds.list_builders(with_community_datasets=False)
  if base not in known:
    close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return f"unknown tfds dataset {name!r}.{hint} {usage}"
  configs = [c.name for c in (tfds.builder_cls(base).BUILDER_CONFIGS or ())]
  if config is not None and config not in configs:
    close = difflib.get_close_matches(config, configs, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(f'{base}/{c}' for c in close)}." if close else ""
    allowed = f"; its configs: {', '.join(configs)}" if configs else " (it has no configs)"
    return f"unknown config {config!r} of tfds dataset {base!r}{allowed}.{hint}"
  return None


def _split_names(split: str) -> list:
  """The split names a tfds split expression reads: ``"train[:50%]+extra"`` ->
  ``["train", "extra"]``."""
  return [re.sub(r"\[.*\]\s*$", "", term).strip() for term in split.split("+")]


def prepared_builder(dataset: str, data_dir: Optional[str]):
  """The tfds builder of ``dataset`` when it is registered and prepared in ``data_dir``
  (its info is then read offline, nothing is built), else None."""
  if check_dataset_name(dataset):
    return None
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
    return builder if builder.is_prepared() else None
  except Exception:  # not registered, not prepared: the dataset checks report it
    return None


def _known_splits(dataset: str, data_dir: Optional[str]) -> Optional[list]:
  """The split names of ``dataset`` where they can be read offline without building
  anything (an image folder's split folders, a prepared tfds dataset's info, the
  embedded dataset's generator), else None."""
  if dataset.startswith(FOLDER_PREFIX):
    root = pathlib.Path(dataset[len(FOLDER_PREFIX):])
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not _hidden(d)) \
        if root.is_dir() else None
  if dataset.split("/")[0] == EMBEDDED and not check_dataset_name(dataset):
    from mssl.data import shapes
    return sorted(shapes.SPLITS)
  builder = prepared_builder(dataset, data_dir)
  return sorted(builder.info.splits) if builder is not None else None


def check_split(dataset: str, split: str, *, data_dir: Optional[str] = None,
                train_split: str = "train") -> Optional[str]:
  """None when ``split`` can be read from ``dataset``, else why not, naming the splits
  there are (and, of an image folder, class folders that the training split
  ``train_split`` lacks: their images would have no label id). Offline and cheap: what
  cannot be known without building the dataset passes."""
  if dataset.startswith(FOLDER_PREFIX):
    try:
      parts = _folder_parts(split)
    except ValueError as e:
      return str(e).replace("config.data: ", "")
    names = [part.name for part in parts]
  else:
    names = _split_names(split)
  known = _known_splits(dataset, data_dir)
  if known is None:
    return None
  missing = [n for n in names if n not in known]
  if missing:
    close = sorted({c for n in missing for c in difflib.get_close_matches(n, known, n=3)})
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"split {split!r} names {', '.join(repr(m) for m in missing)}, which "
            f"dataset {dataset!r} does not have; its splits: "
            f"{', '.join(known) or '(none)'}.{hint}")
  if dataset.startswith(FOLDER_PREFIX):
    root = pathlib.Path(dataset[len(FOLDER_PREFIX):])
    classes = set(folder_class_names(str(root), train_split))
    extra = sorted({d.name for n in names for d in _label_folders(root / n)} - classes)
    if extra and names != _split_names(train_split):
      return _classes_lacking(f"split {split!r} of image folder {str(root)!r}", extra,
                              train_split, sorted(classes))
  return None


def _classes_lacking(where: str, unknown, train_split: str, classes) -> str:
  return (f"{where} holds class folder(s) {list(unknown)} that the training split "
          f"{train_split!r} lacks (its classes: {list(classes)}); no label id means the "
          "same class in both. Add the class to the training split or remove it here.")


def dataset_num_classes(dataset: str, *, data_dir: Optional[str] = None,
                        train_split: str = "train") -> Optional[int]:
  """The class count of ``dataset``'s labels where it can be read offline (an image
  folder's label folders, a prepared or embedded tfds dataset's info), else None."""
  if dataset.startswith(FOLDER_PREFIX):
    root = dataset[len(FOLDER_PREFIX):]
    return len(folder_class_names(root, train_split)) or None \
        if os.path.isdir(root) else None
  if dataset.split("/")[0] == EMBEDDED and not check_dataset_name(dataset):
    from mssl.data import shapes
    return len(shapes.CLASSES)
  builder = prepared_builder(dataset, data_dir)
  if builder is None or "label" not in builder.info.features:
    return None
  return getattr(builder.info.features["label"], "num_classes", None)


def _load_tfds(name: str, split: str, data_dir: Optional[str], download: bool,
               process_index: int, process_count: int, encoded: bool = False) -> Split:
  problem = check_dataset_name(name)
  if problem:
    raise ValueError(f"config.data.dataset: {problem}")
  builder = tfds.builder(name, data_dir=data_dir)
  data_dir = str(builder.data_dir_root) if hasattr(builder, "data_dir_root") else data_dir
  if name.split("/")[0] == EMBEDDED or download:
    if not builder.is_prepared():
      builder.download_and_prepare()
  shard = tfds.even_splits(split, n=process_count)[process_index] if process_count > 1 \
      else split
  image_feature = builder.info.features["image"]
  # Only JPEG features stay encoded: a crop of a PNG (cifar10, the embedded dataset) is
  # decoded whole anyway, and those small fixed-shape splits are cached decoded.
  encoded = encoded and getattr(image_feature, "encoding_format", None) == "jpeg"
  try:
    ds = builder.as_dataset(
        split=shard, shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()} if encoded else None,
        read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False,
                                    add_tfds_id=encoded))
  except AssertionError as e:  # tfds' "could not find data in ..."
    raise DatasetNotReadyError(
        f"dataset {name!r} (split {split!r}) was not found in data_dir {data_dir!r}. "
        + _prepare_instructions(name, data_dir)) from e
  except ValueError as e:
    raise ValueError(f"config.data: bad split {split!r} for dataset {name!r}: {e}") from e
  features = builder.info.features
  ds = ds.map(lambda ex: {"image": ex["image"],
                          "label": tf.cast(ex.get("label", -1), tf.int64),
                          **({"name": ex["tfds_id"]} if encoded else {})},
              num_parallel_calls=tf.data.AUTOTUNE)
  num_classes = getattr(features["label"], "num_classes", None) if "label" in features \
      else None
  class_names = tuple(getattr(features["label"], "names", None) or ()) or None \
      if "label" in features else None
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
  return Split(ds, count(shard), count(split), num_classes, image_shape, class_names,
               encoded=encoded, encoded_bytes=encoded_bytes() if encoded else None,
               source=f"split {split!r} of dataset {name!r}")


# ------------------------------------------------------------------ image folders -----
class DataWarning(UserWarning):
  """Something in the data that a run survives but a researcher should know about."""


def _hidden(path: pathlib.Path) -> bool:
  return path.name.startswith(".")  # .ipynb_checkpoints/, macOS ._x.png resource forks


@dataclasses.dataclass(frozen=True)
class _FolderPart:
  """One ``name[start:end]`` term of a folder split (``+`` joins terms, as in tfds)."""
  name: str
  start: Optional[str] = None
  end: Optional[str] = None

  def select(self, n: int) -> slice:
    """tfds' slice semantics: absolute or percent boundaries, negative from the end,
    percents rounded to the closest example (so ``[:50%]`` and ``[50%:]`` complement)."""
    def boundary(text):
      if text is None or not text.strip():
        return None
      value, percent = re.fullmatch(r"\s*(-?\d+)\s*(%?)\s*", text).groups()
      value = int(value)
      if percent:
        if abs(value) > 100:
          raise ValueError(f"split {self.name}[{self.start or ''}:{self.end or ''}]: "
                           f"percent boundary {value}% is outside [-100%, 100%].")
        return int(round(value * n / 100))
      return value
    return slice(boundary(self.start), boundary(self.end))


def _folder_parts(split: str) -> list:
  parts = []
  for term in split.split("+"):
    match = re.fullmatch(
        r"\s*([^\[\]:+\s]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*", term)
    if not match:
      raise ValueError(f"config.data: bad split {split!r} for an image folder; use "
                       "tfds' syntax: NAME, NAME[start:end] with example counts or "
                       "percents (e.g. train[:5000], train[10%:], test[-500:]), joined by "
                       "'+'.")
    parts.append(_FolderPart(*match.groups()))
  return parts


def _subfolders(split_dir: pathlib.Path) -> list:
  if not split_dir.is_dir():
    return []
  return sorted(d for d in split_dir.iterdir() if d.is_dir() and not _hidden(d))


def _holds_images(folder: pathlib.Path) -> bool:
  return any(f.suffix.lower() in IMAGE_SUFFIXES and not _hidden(f) for f in folder.iterdir())


def _label_folders(split_dir: pathlib.Path) -> list:
  """The class folders of a split: its subfolders that hold images (an empty folder is
  not a class; :func:`_load_folder` names it)."""
  return [d for d in _subfolders(split_dir) if _holds_images(d)]


def folder_class_names(root: str, train_split: str = "train") -> tuple:
  """The class list of an image folder, shared by all its splits (label id = index).

  The sorted label folders of the training split (``train_split``; with ``+`` the union
  of its terms' folders); if that split has none (unlabelled pretraining data), the
  sorted union of every split's label folders. Empty for a fully unlabelled folder.
  """
  root_path = pathlib.Path(root)
  names = {d.name for part in _folder_parts(train_split)
           for d in _label_folders(root_path / part.name)}
  if not names and root_path.is_dir():
    names = {d.name for split_dir in root_path.iterdir()
             if split_dir.is_dir() and not _hidden(split_dir)
             for d in _label_folders(split_dir)}
  return tuple(sorted(names))


def _images_in(folder: pathlib.Path, key_prefix: str) -> list:
  """The folder's image files in a fixed pseudo-random order: sorted by a hash of their
  name, so the order does not depend on file naming (frame numbers, scraping order), on
  the process count, or on files added later (each keeps its place relative to the rest)."""
  files = [f for f in folder.iterdir()
           if f.suffix.lower() in IMAGE_SUFFIXES and not _hidden(f)]
  return sorted(files,
                key=lambda f: hashlib.md5(f"{key_prefix}/{f.name}".encode()).digest())


def _stratified_order(sizes: Sequence[int]) -> list:
  """``(group, member)`` pairs interleaving groups in proportion to their sizes.

  Member ``j`` of a group of ``n`` sits at ``(j + 1/2) / n``; merging the groups by that
  position means every contiguous range of the order (so every slice) holds each group
  in proportion, within about one example.
  """
  order = [((j + 0.5) / n, g, j) for g, n in enumerate(sizes) for j in range(n)]
  return [(g, j) for _, g, j in sorted(order)]


_PNG_END = b"IEND\xaeB`\x82"   # the IEND chunk and its (fixed) CRC
_JPEG_END = b"\xff\xd9"        # EOI; entropy-coded data escapes 0xFF, so it cannot occur
_TAIL_BYTES = 4096             # end markers are looked for this close to the end
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_height_width(f) -> Optional[tuple]:
  """The frame size from the first SOF segment (skipping APPn/EXIF by their lengths)."""
  f.seek(2)
  while True:
    if f.read(1) != b"\xff":
      return None
    marker = f.read(1)
    while marker == b"\xff":  # fill bytes
      marker = f.read(1)
    if not marker or marker[0] in (0xD9, 0xDA):  # end of image / start of scan: no SOF
      return None
    if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # no length field
      continue
    length = f.read(2)
    if len(length) < 2:
      return None
    if marker[0] in _SOF_MARKERS:
      frame = f.read(5)
      height, width = struct.unpack(">HH", frame[1:5]) if len(frame) == 5 else (0, 0)
      return (height, width) if height and width else None
    f.seek(struct.unpack(">H", length)[0] - 2, 1)


def _quick_size(path: str) -> Optional[tuple]:
  """``(height, width)`` from the header when the file looks whole, else None.

  Reads the header and the last 4 KiB: a PNG must have its IEND chunk near the end, a
  JPEG its EOI marker (a truncated file has neither). Anything else is left to a decode.
  """
  with open(path, "rb") as f:
    head = f.read(24)
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _TAIL_BYTES))
    tail = f.read()
    if head.startswith(_MAGIC[0]) and head[12:16] == b"IHDR" and _PNG_END in tail:
      width, height = struct.unpack(">II", head[16:24])
      return (height, width) if height and width else None
    if head.startswith(_MAGIC[1]) and _JPEG_END in tail:
      return _jpeg_height_width(f)
  return None


def _decode_error(message: str) -> str:
  """A TF error's cause without its ``{{function_node ...}}`` and ``[Op:...]`` wrapping."""
  message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
  return re.sub(r"\s*\[Op:\w+\].*", "", message.strip().splitlines()[0])


# (path, size, mtime) -> ((height, width) or None, problem or None); a split is checked
# once per process however many times it is loaded (training, kNN, probes).
_CHECKED: dict = {}


def _check_image(path: str) -> tuple:
  """``((height, width), None, file bytes)`` for an image the pipeline can decode, else
  ``(None, why, file bytes)``. Headers answer for whole PNG/JPEG files; anything that does
  not look whole (truncated, another format, not an image) is decoded as the pipeline
  would."""
  try:
    stat = os.stat(path)
  except OSError as e:
    return None, f"cannot read: {e.strerror}", 0
  key = (path, stat.st_size, stat.st_mtime_ns)
  if key not in _CHECKED:
    try:
      size = _quick_size(path)
      if size is None:
        shape = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False).shape
        size = (int(shape[0]), int(shape[1]))
      _CHECKED[key] = (size, None)
    except tf.errors.OpError as e:
      _CHECKED[key] = (None, _decode_error(e.message))
    except OSError as e:
      _CHECKED[key] = (None, f"cannot read: {e.strerror}")
  return (*_CHECKED[key], stat.st_size)


def _check_images(paths: Sequence[str]) -> list:
  """:func:`_check_image` of every path, in chunks on threads (the work is file reads:
  on a network file system each one waits). Measured on the (busy) 2-core CPU with files
  in the page cache: 30-90 us per file, about a minute per process for a million files."""
  chunk = 256
  if len(paths) <= chunk:
    return [_check_image(p) for p in paths]
  chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
  workers = min(16, max(2, os.cpu_count() or 2), len(chunks))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    checked = pool.map(lambda c: [_check_image(p) for p in c], chunks)
    return [result for results in checked for result in results]


def _decode_skipping_failures(paths: Sequence[str], labels: Sequence[int], where: str,
                              strict: bool = False, encoded: bool = False) -> tf.data.Dataset:
  """Decoded ``{"image", "label"}`` examples; a file that fails to decode anyway (it
  changed after the check, or is damaged inside) is skipped with a :class:`DataWarning`
  naming it instead of ending the run (``strict``: the run stops with an error naming it).
  With ``encoded``: ``{"image": the file's bytes, "label", "name": its path}``, and only
  a file that can no longer be read is skipped here (decoding happens later; see
  :func:`_map_reporting_failures`).

  Decoding keeps the file order, so a skipped file is a gap in the indices that arrive;
  an end marker catches a gap at the end. Cost, measured on the 2-core CPU (tiny 64 px
  PNGs, where decoding is cheapest): ~190 instead of ~115 us per image, paid in the first
  epoch only when the split is cached; a 224 px JPEG takes 1-2 ms to decode.
  """
  count = len(paths)
  paths_t = tf.constant(list(paths))
  labels_t = tf.constant(list(labels), tf.int64)

  def decode(index):
    contents = tf.io.read_file(paths_t[index])
    if encoded:
      return index, {"image": contents, "label": labels_t[index], "name": paths_t[index]}
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return index, {"image": image, "label": labels_t[index]}

  def warn(start, stop):
    names = list(paths[int(start):int(stop)])
    if strict:
      raise ValueError(f"{where}: {len(names)} image(s) failed to decode while reading "
                       f"(strict=True): {'; '.join(names)}")
    warnings.warn(f"{where}: skipped {len(names)} image(s) that failed to decode while "
                  f"reading: {'; '.join(names)}", DataWarning, stacklevel=2)
    return np.int64(0)

  def note_gaps(expected, element):
    index, _ = element  # indices arrive in order; a gap is a skipped file
    noted = tf.cond(index > expected,
                    lambda: tf.numpy_function(warn, [expected, index], tf.int64,
                                              stateful=True),
                    lambda: tf.constant(0, tf.int64))
    return index + 1 + 0 * noted, element

  end = tf.data.Dataset.from_tensors((tf.constant(count, tf.int64), {
      "image": tf.constant(b"") if encoded else tf.zeros([0, 0, 3], tf.uint8),
      "label": tf.constant(-1, tf.int64), **({"name": tf.constant("")} if encoded else {})}))
  ds = tf.data.Dataset.range(count).map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                                        deterministic=True)
  ds = ds.ignore_errors().concatenate(end).scan(tf.constant(0, tf.int64), note_gaps)
  return ds.filter(lambda index, _: index < count).map(lambda _, example: example)


def _load_folder(root: str, split: str, process_index: int, process_count: int, *,
                 train_split: str = "train", strict: bool = False,
                 encoded: bool = False) -> Split:
  """See :func:`load_split`; ``PATH/<split>/<label>/*.png`` or ``PATH/<split>/*.png``."""
  root_path = pathlib.Path(root)
  classes = folder_class_names(root, train_split)
  ids = {name: i for i, name in enumerate(classes)}
  files, labels = [], []
  for part in _folder_parts(split):
    split_dir = root_path / part.name
    if not split_dir.is_dir():
      raise DatasetNotReadyError(
          f"image folder split {str(split_dir)!r} does not exist. Expected the layout "
          f"{root}/<split>/<label>/*.png (or .jpg), e.g. {root}/train/cat/0001.png.")
    subfolders = _subfolders(split_dir)
    label_dirs = [d for d in subfolders if _holds_images(d)]  # as _label_folders
    empty = [d.name for d in subfolders if d not in label_dirs]
    if empty and label_dirs:  # (none with images: the "holds no images" error below)
      message = (f"image folder split {str(split_dir)!r}: class folder(s) {empty} hold no "
                 "images (*.png, *.jpg, *.jpeg)")
      if strict:
        raise ValueError(message + "; add images or remove the folder(s) (or leave "
                         "strict off to skip them).")
      warnings.warn(message + "; skipped: they are not classes (strict=True stops "
                    "instead).", DataWarning, stacklevel=3)
    unknown = [d.name for d in label_dirs if d.name not in ids]
    if unknown:
      raise ValueError(_classes_lacking(f"image folder split {str(split_dir)!r}", unknown,
                                        train_split, classes))
    groups = ([(ids[d.name], _images_in(d, d.name)) for d in label_dirs] if label_dirs
              else [(-1, _images_in(split_dir, ""))])
    if not any(members for _, members in groups):
      raise ValueError(f"image folder {str(split_dir)!r} holds no images (*.png, *.jpg, "
                       "*.jpeg), neither directly nor in label folders.")
    order = _stratified_order([len(members) for _, members in groups])
    chosen = order[part.select(len(order))]
    if not chosen:
      raise ValueError(f"split {split!r} of image folder {root!r} selects no images "
                       f"({part.name!r} holds {len(order)}).")
    files += [str(groups[g][1][j]) for g, j in chosen]
    labels += [groups[g][0] for g, _ in chosen]
  if len(classes) == 1:
    warnings.warn(f"image folder {root!r} has one class ({classes[0]!r}): kNN and linear "
                  "probe accuracies are 100% whatever the encoder learns.", DataWarning,
                  stacklevel=3)

  checks = _check_images(files)
  bad = [f"{path} ({why})" for path, (_, why, _) in zip(files, checks) if why]
  if bad:
    message = (f"{len(bad)} of {len(files)} file(s) of split {split!r} in image folder "
               f"{root!r} are not readable PNG/JPEG images: {'; '.join(bad)}.")
    if strict or len(bad) == len(files):
      raise ValueError(message + " Remove or convert them" +
                       (" (or leave strict off to skip them)." if strict else "."))
    warnings.warn(message + " Skipping them (strict=True stops instead).", DataWarning,
                  stacklevel=3)
    keep = [i for i, (_, why, _) in enumerate(checks) if not why]
    files, labels, checks = ([x[i] for i in keep] for x in (files, labels, checks))
  # Contiguous blocks (as tfds.even_splits): a block of the order is proportional, a
  # stride through it need not be.
  shard = slice(len(files) * process_index // process_count,
                len(files) * (process_index + 1) // process_count)
  where = f"split {split!r} of image folder {root!r}"
  ds = _decode_skipping_failures(files[shard], labels[shard], where, strict, encoded)
  decoded_bytes = sum(h * w * 3 for (h, w), _, _ in checks[shard])
  return Split(ds, len(files[shard]), len(files), len(classes) or None, None,
               class_names=classes or None, decoded_bytes=decoded_bytes,
               skipped_files=tuple(bad), encoded=encoded,
               encoded_bytes=sum(n for _, _, n in checks[shard]) if encoded else None,
               strict=strict, source=where)


def load_split(dataset: str, split: str, *, data_dir: Optional[str] = None,
               download: bool = False, process_index: int = 0, process_count: int = 1,
               train_split: str = "train", strict: bool = False,
               encoded: bool = False) -> Split:
  """One process's shard of ``dataset``'s ``split`` (see the module docstring).

  Image folders only: ``train_split`` is the split whose label folders define the class
  list (every split's label ids); ``strict=True`` raises on files that do not decode
  instead of skipping them with a warning.

  ``encoded=True`` asks for the images undecoded (``Split.encoded``), so that
  ``train_dataset(..., device_augment=True)`` decodes, of a JPEG, only the box holding
  the example's crop windows: an image folder's split always is (its PNGs are decoded
  whole when cropped), a tfds split only when its image feature is stored as JPEG
  (``imagenet2012``, ``imagenette``; ``cifar10`` and the embedded dataset stay decoded).
  Every consumer of a Split takes either kind.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}.")
  if dataset.startswith(FOLDER_PREFIX):
    return _load_folder(dataset[len(FOLDER_PREFIX):], split, process_index, process_count,
                        train_split=train_split, strict=strict, encoded=encoded)
  return _load_tfds(dataset, split, data_dir, download, process_index, process_count,
                    encoded)


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


def caches_decoded(split: Split, cache) -> bool:
  """Whether :func:`train_dataset` keeps this (decoded) split's pixels in memory."""
  return not split.encoded and _should_cache(split, cache)


def _should_cache(split: Split, cache) -> bool:
  """``cache``: "always", "never", or "auto": when this process's decoded split is known
  to be below ``CACHE_LIMIT_BYTES`` (2 GiB; image folders: from their headers)."""
  if cache not in CACHE_MODES and not isinstance(cache, bool):
    raise ValueError(f"cache must be one of {CACHE_MODES}; got {cache!r}.")
  if cache != "auto":
    return cache in (True, "always")
  size = split.decoded_bytes
  if size is None and split.num_examples is not None and split.image_shape is not None:
    size = split.num_examples * int(np.prod(split.image_shape))
  return size is not None and size < CACHE_LIMIT_BYTES


def _map_reporting_failures(ds: tf.data.Dataset, fn: Callable, placeholder: Callable,
                            split: Split, *, first_index: int = 0, keep_slot: bool,
                            finite: bool = False) -> tf.data.Dataset:
  """``fn(example)`` of the ``(index, example)`` pairs of ``ds`` (indices consecutive from
  ``first_index``), in order and in parallel, surviving ``fn`` failing on an example: an
  encoded image that does not decode (damage the load-time header check cannot see, a bad
  tfds record). The example is reported by its ``"name"`` (a :class:`DataWarning`, or
  with ``split.strict`` an error that stops the run), then left out, or with
  ``keep_slot`` replaced by ``placeholder()``, which keeps every later example at its
  position in the stream (so that a resumed training stream stays exact).

  How: each example's name goes into a hash table keyed by its index before ``fn`` runs;
  failed examples are dropped (``ignore_errors``); a sequential scan sees the gaps in the
  indices, reports the names found under them, and removes every index it has passed
  (the table holds the examples in flight only). A gap is seen when the next example
  arrives, and, with ``finite``, at the end of the stream. In the common case (no gap)
  this costs a table insert and remove per example and, with ``keep_slot``, one copy of
  its views: not measurable beside a 224 px two-view example's ~5 ms (within the +-10%
  run-to-run noise of the shared 2-core CPU). A per-example ``interleave`` of one-element
  datasets, the obvious alternative, cost ~0.3 ms per example alone, 10-20% in the
  pipeline.
  """
  names = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, default_value="")

  def attempt(index, example):
    with tf.control_dependencies([names.insert(index[None], example["name"][None])]):
      example = {key: tf.identity(value) for key, value in example.items()}
    return index, fn(example)

  def report(failed):
    failed = [n.decode(errors="replace") for n in np.atleast_1d(failed)]
    if split.strict:
      raise ValueError(f"{split.source}: {len(failed)} image(s) failed to decode while "
                       f"reading (strict=True): {'; '.join(failed)}")
    warnings.warn(f"{split.source}: {'replaced' if keep_slot else 'skipped'} "
                  f"{len(failed)} image(s) that failed to decode while reading"
                  f"{' (by a grey placeholder with label -1)' if keep_slot else ''}: "
                  f"{'; '.join(failed)}", DataWarning, stacklevel=2)
    return np.int64(0)

  def report_if(condition, failed_names):
    return tf.cond(condition,
                   lambda: tf.numpy_function(report, [failed_names], tf.int64, stateful=True),
                   lambda: tf.constant(0, tf.int64))

  def gaps(expected, element):
    index, out = element
    if finite:  # index -1 marks the end: whatever is left in the table failed
      at_end = index < 0
      left_keys, left_names = names.export()
      left = tf.gather(left_names, tf.argsort(left_keys))
      noted_end = report_if(at_end & (tf.size(left) > 0), left)
      index = tf.where(at_end, expected, index)
    else:
      noted_end = tf.constant(0, tf.int64)
    missing = index - expected
    noted = report_if(missing > 0, names.lookup(tf.range(expected, index)))
    with tf.control_dependencies([names.remove(tf.range(expected, index + 1))]):
      following = index + 1 + 0 * (noted + noted_end)  # (ties the reports to the output)
    if not keep_slot:
      return following, out
    stacked = tf.cond(
        missing > 0,
        lambda: tf.nest.map_structure(
            lambda p, o: tf.concat([tf.repeat(p[None], missing, 0), o[None]], 0),
            placeholder(), out),
        lambda: tf.nest.map_structure(lambda o: o[None], out))
    return following, stacked

  ds = ds.map(attempt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.ignore_errors()
  if finite:
    ds = ds.concatenate(tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64),
                                                      placeholder())))
  ds = ds.scan(tf.constant(first_index, tf.int64), gaps)
  return ds.unbatch() if keep_slot else ds


def _decoded(ds: tf.data.Dataset, split: Split) -> tf.data.Dataset:
  """An encoded split's examples decoded (uint8 ``(H, W, 3)``, ``name`` dropped); an
  image that does not decode is left out with a warning naming it (``strict``: stops)."""
  end = {"image": tf.zeros([0, 0, 3], tf.uint8), "label": tf.constant(-2, tf.int64)}
  ds = _map_reporting_failures(
      ds.enumerate(), lambda ex: {"image": augment.decode(ex["image"]), "label": ex["label"]},
      lambda: end, split, keep_slot=False, finite=True)
  return ds.filter(lambda ex: ex["label"] != -2)  # the end marker


def _training_source(split: Split, cache, device_augment: bool) -> tuple:
  """``(examples, still_encoded)``: the split as :func:`train_dataset` starts from it,
  cached as ``cache`` says.

  A decoded split: as before (:func:`_should_cache`). An encoded split is decoded before
  the shuffle, once, when its decoded pixels are cached (``"always"``, or ``"auto"`` when
  they fit, as a decoded split would be: a small folder of JPEGs then costs no decoding
  after the first epoch) or when the views are made on the host (``device_augment`` off,
  whose views need the whole image); otherwise it stays encoded and each example decodes
  the box holding its views' crops. ``"auto"`` then keeps the encoded bytes in memory
  when they fit (file reads saved; decoding happens per example anyway), e.g.
  imagenette's JPEGs (0.3-1.5 GB) but not ImageNet's 140 GB.
  """
  cache_decoded = _should_cache(split, cache)
  if not split.encoded:
    return (split.dataset.cache() if cache_decoded else split.dataset), False
  cache_encoded = (cache == "auto" and not cache_decoded and split.encoded_bytes is not None
                   and split.encoded_bytes < CACHE_LIMIT_BYTES)
  ds = split.dataset.cache() if cache_encoded else split.dataset
  if cache_decoded or not device_augment:
    ds = _decoded(ds, split)
    return (ds.cache() if cache_decoded else ds), False
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
  example's crop windows (:func:`_training_source` says when it is decoded whole and
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
  ds, encoded = _training_source(split, cache, device_augment)
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
      ds = _map_reporting_failures(ds, make_uint8_views, placeholder, split,
                                   first_index=start_batch * batch_size, keep_slot=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options(autotune))


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
  source = _decoded(split.dataset, split) if split.encoded else split.dataset
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
