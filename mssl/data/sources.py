"""Where a split comes from: a dataset name -> its source, and the offline checks of a name.

A dataset is a tfds name (:mod:`mssl.data.tfds_source`: ``cifar10``, ``imagenette/320px``,
``mssl_shapes/32``, the embedded dataset) or an image folder
(:mod:`mssl.data.image_folder`: ``image_folder:PATH``). Both hand the pipelines the same
:class:`~mssl.data.split.Split`: one process's shard, which each process reads disjoint
from the others (``process_index`` of ``process_count``).
"""

from __future__ import annotations

import difflib
from typing import Optional

from mssl.data import image_folder, tfds_source
from mssl.data.split import Split

def check_dataset_name(name: str) -> Optional[str]:
  """None when ``name`` names a dataset :func:`load_split` knows, else why not.

  ``image_folder:PATH`` and namespaced tfds names (``ns:name``) are accepted as they are
  (the folder's existence is checked when it is loaded); a tfds name must be registered
  (``tfds.list_builders()``, the embedded ``mssl_shapes`` included), and so must its
  config. The message names the closest registered names. Offline and cheap: nothing is
  built or read.
  """
  if image_folder.is_image_folder(name):
    return None
  return tfds_source.check_name(name)


def check_split(dataset: str, split: str, *, data_dir: Optional[str] = None,
                train_split: str = "train") -> Optional[str]:
  """None when ``split`` can be read from ``dataset``, else why not, naming the splits
  there are (and, of an image folder, class folders that the training split
  ``train_split`` lacks: their images would have no label id). Offline and cheap: what
  cannot be known without building the dataset passes."""
  folder = image_folder.is_image_folder(dataset)
  if folder:
    root = image_folder.root_of(dataset)
    try:
      names = image_folder.split_names(split)
    except ValueError as e:
      return str(e).replace("config.data: ", "")
    known = image_folder.known_splits(root)
  else:
    names = tfds_source.split_names(split)
    known = tfds_source.known_splits(dataset, data_dir)
  if known is None:
    return None
  missing = [n for n in names if n not in known]
  if missing:
    close = sorted({c for n in missing for c in difflib.get_close_matches(n, known, n=3)})
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"split {split!r} names {', '.join(repr(m) for m in missing)}, which "
            f"dataset {dataset!r} does not have; its splits: "
            f"{', '.join(known) or '(none)'}.{hint}")
  return image_folder.check_classes(root, split, names, train_split) if folder else None


def dataset_num_classes(dataset: str, *, data_dir: Optional[str] = None,
                        train_split: str = "train") -> Optional[int]:
  """The class count of ``dataset``'s labels where it can be read offline (an image
  folder's label folders, a prepared or embedded tfds dataset's info), else None."""
  if image_folder.is_image_folder(dataset):
    return image_folder.num_classes(image_folder.root_of(dataset), train_split)
  return tfds_source.num_classes(dataset, data_dir)


def load_split(dataset: str, split: str, *, data_dir: Optional[str] = None,
               download: bool = False, process_index: int = 0, process_count: int = 1,
               train_split: str = "train", strict: bool = False,
               encoded: bool = False) -> Split:
  """One process's shard of ``dataset``'s ``split``.

  Image folders only: ``train_split`` is the split whose label folders define the class
  list (every split's label ids); ``strict=True`` raises on files that do not decode
  instead of skipping them with a warning.

  ``encoded=True`` asks for the images undecoded (``Split.encoded``), so that
  ``pipeline.train_dataset(..., device_augment=True)`` decodes, of a JPEG, only the box
  holding the example's crop windows: an image folder's split always is (its PNGs are
  decoded whole when cropped), a tfds split only when its image feature is stored as JPEG
  (``imagenet2012``, ``imagenette``; ``cifar10`` and the embedded dataset stay decoded).
  Every consumer of a Split takes either kind.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}.")
  if image_folder.is_image_folder(dataset):
    return image_folder.load(image_folder.root_of(dataset), split, process_index,
                             process_count, train_split=train_split, strict=strict,
                             encoded=encoded)
  return tfds_source.load(dataset, split, data_dir, download, process_index, process_count,
                          encoded)
