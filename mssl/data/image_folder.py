"""Image folders as a source of splits: ``PATH/<split>/<label>/*.{png,jpg,jpeg}``.

The layout of tfds' ImageFolder; ``PATH/<split>/*.png`` without label folders is read as
unlabelled (label -1). Hidden files and folders (``.ipynb_checkpoints``, macOS
``._x.png``) are ignored. A dataset is named ``image_folder:PATH`` (:data:`PREFIX`).
tfds' conventions are followed where they can be:

* *One class list per dataset.* Label ids index the sorted label folders of the training
  split (``train_split``, default ``train``), the same for every split
  (:func:`class_names`, ``Split.class_names``). A split holding a class the training
  split lacks is an error naming it; a dataset of one class is a
  :class:`~mssl.data.split.DataWarning` (probes score 100% on it whatever the encoder
  learns).
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
  with a DataWarning naming each one and the count, or, with ``strict=True``, the load
  raises a ``ValueError`` listing them, before any training. A file that still fails to
  decode later (changed after the check, damaged inside) is reported by
  :mod:`mssl.data.failures`, the reporter every reading path shares.
* *Sizes from headers*: ``Split.decoded_bytes`` (and ``encoded_bytes``) come from the
  image headers and file sizes, so that :mod:`mssl.data.cache` can keep a small folder
  in memory although its image shape is not fixed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
import re
import struct
import warnings
from typing import Optional, Sequence

import tensorflow as tf

from mssl.data import failures
from mssl.data.split import DatasetNotReadyError, DataWarning, Split

PREFIX = "image_folder:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def is_image_folder(dataset: str) -> bool:
  """Whether ``dataset`` names an image folder (``image_folder:PATH``)."""
  return dataset.startswith(PREFIX)


def root_of(dataset: str) -> str:
  """The folder of ``image_folder:PATH``."""
  return dataset[len(PREFIX):]


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
  not a class; :func:`load` names it)."""
  return [d for d in _subfolders(split_dir) if _holds_images(d)]


def class_names(root: str, train_split: str = "train") -> tuple:
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


def classes_lacking(where: str, unknown, train_split: str, classes) -> str:
  """The error for class folders of ``where`` that the training split lacks."""
  return (f"{where} holds class folder(s) {list(unknown)} that the training split "
          f"{train_split!r} lacks (its classes: {list(classes)}); no label id means the "
          "same class in both. Add the class to the training split or remove it here.")


def known_splits(root: str) -> Optional[list]:
  """The split folders of ``root``, or None when it is not a folder."""
  path = pathlib.Path(root)
  return sorted(d.name for d in path.iterdir() if d.is_dir() and not _hidden(d)) \
      if path.is_dir() else None


def num_classes(root: str, train_split: str = "train") -> Optional[int]:
  """The class count (label folders, :func:`class_names`), or None when there are none or
  ``root`` is not a folder."""
  return len(class_names(root, train_split)) or None if os.path.isdir(root) else None


def split_names(split: str) -> list:
  """The split folders a split expression reads: ``"train[:50%]+extra"`` -> ``["train",
  "extra"]``; a ``ValueError`` for an expression that is not tfds' syntax."""
  return [part.name for part in _folder_parts(split)]


def check_classes(root: str, split: str, names: Sequence[str],
                  train_split: str = "train") -> Optional[str]:
  """None unless ``split`` (reading the split folders ``names``) of the folder ``root``
  holds class folders that the training split ``train_split`` lacks (their images would
  have no label id): then the error."""
  classes = set(class_names(root, train_split))
  extra = sorted({d.name for n in names for d in _label_folders(pathlib.Path(root) / n)}
                 - classes)
  if extra and names != split_names(train_split):
    return classes_lacking(f"split {split!r} of image folder {str(pathlib.Path(root))!r}",
                           extra, train_split, sorted(classes))
  return None


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
  on a network file system each one waits)."""
  chunk = 256
  if len(paths) <= chunk:
    return [_check_image(p) for p in paths]
  chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
  workers = min(16, max(2, os.cpu_count() or 2), len(chunks))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    checked = pool.map(lambda c: [_check_image(p) for p in c], chunks)
    return [result for results in checked for result in results]


def load(root: str, split: str, process_index: int, process_count: int, *,
         train_split: str = "train", strict: bool = False, encoded: bool = False) -> Split:
  """One process's shard of ``split`` of the folder ``root`` (contiguous blocks of the
  stratified order); see :func:`mssl.data.sources.load_split`. Decoded examples, or with
  ``encoded`` ``{"image": the file's bytes, "label", "name": its path}``."""
  root_path = pathlib.Path(root)
  classes = class_names(root, train_split)
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
      raise ValueError(classes_lacking(f"image folder split {str(split_dir)!r}", unknown,
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
  ds = _read(files[shard], labels[shard], where, strict, encoded)
  decoded_bytes = sum(h * w * 3 for (h, w), _, _ in checks[shard])
  return Split(ds, len(files[shard]), len(files), len(classes) or None, None,
               class_names=classes or None, decoded_bytes=decoded_bytes,
               skipped_files=tuple(bad), encoded=encoded,
               encoded_bytes=sum(n for _, _, n in checks[shard]) if encoded else None,
               strict=strict, source=where)


def _read(paths: Sequence[str], labels: Sequence[int], where: str, strict: bool,
          encoded: bool) -> tf.data.Dataset:
  """The files as examples, in order: decoded (``decode_image``, three channels), or with
  ``encoded`` the file's bytes and its path. A file that can no longer be read, or does not
  decode, is reported by :mod:`mssl.data.failures` and left out."""
  def read(example):
    contents = tf.io.read_file(example["name"])
    if encoded:
      return {"image": contents, "label": example["label"], "name": example["name"]}
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {"image": image, "label": example["label"]}
  files = tf.data.Dataset.from_tensor_slices(
      {"name": tf.constant(list(paths), tf.string),
       "label": tf.constant(list(labels), tf.int64)})
  return failures.map_reporting_failures(files.enumerate(), read, source=where,
                                         strict=strict)
