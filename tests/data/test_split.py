"""mssl.data.split: what every source hands the pipelines. A Split's fields agree with its
examples and across the process shards, for both sources: shard sizes that add up to the
split, class names that index the labels, pixel counts from the images themselves."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mssl import data

from data.folders import write_classes, write_photos


def _examples(split):
  return list(tfds.as_numpy(split.dataset))


def _check_shards(name, split_name, shards=3, **kwargs):
  whole = data.load_split(name, split_name, **kwargs)
  parts = [data.load_split(name, split_name, process_index=i, process_count=shards, **kwargs)
           for i in range(shards)]
  assert whole.total_examples == whole.num_examples == len(_examples(whole))
  assert sum(p.num_examples for p in parts) == whole.num_examples
  assert all(p.total_examples == whole.total_examples for p in parts)
  assert all(abs(p.num_examples - whole.num_examples / shards) < 1 for p in parts)
  assert all(p.num_classes == whole.num_classes == len(whole.class_names) for p in parts)
  labels = np.concatenate([[e["label"] for e in _examples(p)] for p in parts])
  assert labels.min() >= 0 and labels.max() < whole.num_classes
  return whole, parts


def test_a_folder_split_and_its_shards_agree_with_their_examples(tmp_path):
  write_classes(tmp_path, "train", {"a": 5, "b": 4, "c": 4}, size=8)
  whole, parts = _check_shards(f"image_folder:{tmp_path}", "train")
  assert whole.class_names == ("a", "b", "c") and whole.image_shape is None
  assert whole.decoded_bytes == sum(e["image"].size for e in _examples(whole)) == 13 * 192
  assert sum(p.decoded_bytes for p in parts) == whole.decoded_bytes
  assert not whole.encoded and whole.skipped_files == () and "image folder" in whole.source


def test_an_encoded_folder_split_counts_its_file_bytes(tmp_path):
  write_photos(tmp_path, (".jpg", ".png"), count=6)
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  examples = _examples(split)
  assert split.encoded and {"image", "label", "name"} <= set(examples[0])
  assert split.encoded_bytes == sum(len(e["image"]) for e in examples)
  assert split.decoded_bytes == 6 * 48 * 64 * 3  # from the headers: nothing decoded


@pytest.mark.parametrize("split_name", ["train[:90]", "test[:40]"])
def test_a_tfds_split_and_its_shards_agree_with_their_examples(tfds_dir, split_name):
  whole, _ = _check_shards("mssl_shapes/32", split_name, data_dir=tfds_dir)
  assert whole.image_shape == (32, 32, 3)
  assert whole.class_names == data.SHAPE_CLASSES
  assert {e["image"].shape for e in _examples(whole)} == {whole.image_shape}


def test_not_ready_is_a_missing_file_and_the_warning_a_user_warning():
  """Callers that know nothing of mssl catch them as what they are."""
  assert issubclass(data.DatasetNotReadyError, FileNotFoundError)
  assert issubclass(data.DataWarning, UserWarning)


def test_looks_grey_tells_grey_images_from_colour_ones(tmp_path):
  from mssl.data import glyphs
  grey = glyphs.write_folder(tmp_path / "grey", splits={"train": 2}, size=12)
  for encoded in (False, True):
    split = data.load_split(f"image_folder:{grey}", "train", encoded=encoded)
    assert data.split.looks_grey(split)
  write_classes(tmp_path / "colour", "train", {"a": 2, "b": 2})
  assert not data.split.looks_grey(data.load_split(f"image_folder:{tmp_path / 'colour'}",
                                                   "train"))
