"""mssl.data.sources: a dataset name -> its source, and the offline checks of a split, a
class count and a name, for tfds datasets and image folders alike."""

import pytest

from mssl import data

from data.folders import write_classes


def test_check_split_names_what_is_missing_with_close_matches(tmp_path, tfds_dir):
  write_classes(tmp_path, "train", {"a": 2, "b": 2})
  write_classes(tmp_path, "test", {"a": 1, "b": 1})
  folder = f"image_folder:{tmp_path}"
  assert data.check_split(folder, "train[:50%]+test") is None
  problem = data.check_split(folder, "tset")
  assert "names 'tset'" in problem and "its splits: test, train" in problem
  assert "Did you mean 'test'?" in problem
  assert "tfds' syntax" in data.check_split(folder, "train[::2]")
  assert data.check_split("mssl_shapes/32", "train[:5000]", data_dir=tfds_dir) is None
  problem = data.check_split("mssl_shapes/32", "trian", data_dir=tfds_dir)
  assert "'trian'" in problem and "Did you mean 'train'?" in problem
  # What cannot be known offline passes: a tfds dataset that is not prepared.
  assert data.check_split("cifar10", "anything", data_dir=str(tmp_path)) is None


def test_check_split_names_class_folders_the_training_split_lacks(tmp_path):
  write_classes(tmp_path, "train", {"a": 2, "b": 2})
  write_classes(tmp_path, "test", {"a": 1, "c": 1})
  problem = data.check_split(f"image_folder:{tmp_path}", "test")
  assert "class folder(s) ['c']" in problem and "'train' lacks" in problem
  assert data.check_split(f"image_folder:{tmp_path}", "test", train_split="test") is None


def test_class_counts_are_read_offline(tmp_path, tfds_dir):
  write_classes(tmp_path, "train", {"a": 1, "b": 1, "c": 1})
  assert data.dataset_num_classes(f"image_folder:{tmp_path}") == 3
  assert data.dataset_num_classes(f"image_folder:{tmp_path / 'nowhere'}") is None
  assert data.dataset_num_classes("mssl_shapes/32", data_dir=tfds_dir) == len(
      data.SHAPE_CLASSES)
  assert data.dataset_num_classes("cifar10", data_dir=str(tmp_path)) is None  # unprepared


def test_names_are_checked_without_building_anything(tmp_path):
  assert data.check_dataset_name("mssl_shapes/32") is None
  assert data.check_dataset_name(f"image_folder:{tmp_path}/not/yet") is None
  assert data.check_dataset_name("community:anything") is None
  assert "Close matches: cifar10" in data.check_dataset_name("cifar01")
  assert "image_folder:PATH" in data.check_dataset_name("cifar01")
  assert "unknown config '7'" in data.check_dataset_name("mssl_shapes/7")


def test_load_split_dispatches_and_checks_the_process_index(tmp_path, tfds_dir):
  write_classes(tmp_path, "train", {"a": 2})
  with pytest.warns(data.DataWarning, match="one class"):
    assert "image folder" in data.load_split(f"image_folder:{tmp_path}", "train").source
  assert "dataset 'mssl_shapes/32'" in data.load_split("mssl_shapes/32", "test[:4]",
                                                        data_dir=tfds_dir).source
  with pytest.raises(ValueError, match=r"process_index must be in \[0, 2\); got 2"):
    data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir, process_index=2,
                    process_count=2)
