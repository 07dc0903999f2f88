"""mssl.data.image_folder: labels, slices, class lists shared by every split, and files that
are not readable images (skipped by name, or refused under strict)."""


import numpy as np
import pytest
import tensorflow_datasets as tfds

from mssl import data

from data.folders import (contents, first_batches, train_stream, write_broken_images,
                          write_classes, write_folder)


def test_image_folder_loads_with_labels(tmp_path):
  write_folder(tmp_path)
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_examples == 6 and split.num_classes == 2
  assert split.class_names == ("cats", "dogs")
  examples = list(tfds.as_numpy(split.dataset))
  assert sorted(int(e["label"]) for e in examples) == [0, 0, 0, 1, 1, 1]
  assert {e["image"].shape for e in examples} == {(40, 40, 3), (40, 48, 3)}
  (batch,) = first_batches(train_stream(split, "simclr", batch_size=4, image_size=24))
  assert batch["views"][0].shape == (4, 24, 24, 3)
  evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=4, image_size=32)))
  assert [b["image"].shape for b in evals] == [(4, 32, 32, 3)] * 2
  assert float(sum(b["mask"].sum() for b in evals)) == 6



def test_unlabelled_image_folder(tmp_path):
  write_folder(tmp_path, labelled=False, count=3)
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_classes is None
  assert [int(e["label"]) for e in tfds.as_numpy(split.dataset)] == [-1, -1, -1]



def test_image_folder_errors(tmp_path):
  with pytest.raises(data.DatasetNotReadyError, match="does not exist.*<split>/<label>"):
    data.load_split(f"image_folder:{tmp_path}", "train")
  (tmp_path / "train" / "cats").mkdir(parents=True)
  with pytest.raises(ValueError, match="holds no images"):
    data.load_split(f"image_folder:{tmp_path}", "train")
  write_folder(tmp_path)
  (tmp_path / "train" / "cats" / "broken.png").write_bytes(b"not an image at all")
  with pytest.raises(ValueError, match="not readable PNG/JPEG.*broken.png"):
    data.load_split(f"image_folder:{tmp_path}", "train", strict=True)
  with pytest.warns(data.DataWarning, match="not readable PNG/JPEG.*broken.png"):
    assert data.load_split(f"image_folder:{tmp_path}", "train").num_examples == 6
  for bad in ("train[::2]", "train[:150%]", "train[5]"):
    with pytest.raises(ValueError, match="bad split|outside"):
      data.load_split(f"image_folder:{tmp_path}", bad)
  with pytest.raises(ValueError, match="selects no images"):
    data.load_split(f"image_folder:{tmp_path}", "train[7:]")
  (tmp_path / "only_bad" / "train").mkdir(parents=True)
  (tmp_path / "only_bad" / "train" / "a.png").write_bytes(b"not an image either")
  with pytest.raises(ValueError, match="1 of 1 file.*not readable"):  # even without strict
    data.load_split(f"image_folder:{tmp_path / 'only_bad'}", "train")



def test_folder_label_ids_come_from_the_training_split_for_every_split(tmp_path):
  """A test split without class 'a' keeps 'b' = 1, 'c' = 2 (was re-indexed from 0:
  every label off by one, kNN 0.0 on these separable colours)."""
  from mssl.eval import metrics
  write_classes(tmp_path, "train", {"a": 12, "b": 12, "c": 12})
  write_classes(tmp_path, "test", {"b": 6, "c": 6})
  name = f"image_folder:{tmp_path}"
  train, test = data.load_split(name, "train"), data.load_split(name, "test")

  def colour_means(split):
    examples = list(tfds.as_numpy(split.dataset))
    return (np.array([e["image"].reshape(-1, 3).mean(0) for e in examples]),
            np.array([e["label"] for e in examples]))
  x_train, y_train = colour_means(train)
  x_test, y_test = colour_means(test)
  assert np.bincount(y_test).tolist() == [0, 6, 6]
  accuracy = metrics.knn_accuracy(x_train, y_train, x_test, y_test, num_classes=3, k=5,
                                   temperature=0.1)
  assert accuracy == 1.0
  assert train.class_names == test.class_names == ("a", "b", "c")
  assert train.num_classes == test.num_classes == 3
  assert data.image_folder.class_names(str(tmp_path)) == ("a", "b", "c")

  write_classes(tmp_path, "test", {"d": 2})
  with pytest.raises(ValueError, match=r"class folder\(s\) \['d'\] that the training split "
                                       r"'train' lacks"):
    data.load_split(name, "test")
  write_classes(tmp_path / "one", "train", {"a": 3})
  with pytest.warns(data.DataWarning, match=r"one class \('a'\).*100%"):
    assert data.load_split(f"image_folder:{tmp_path / 'one'}", "train").num_classes == 1



def test_folder_slices_hold_every_class_in_proportion(tmp_path):
  """Slices used to take files in sorted order: train[:60] of 3 x 40 held 2 classes."""
  sizes = {"a": 60, "b": 40, "c": 20}
  write_classes(tmp_path, "train", sizes)
  name = f"image_folder:{tmp_path}"
  load = lambda split, **kw: contents(data.load_split(name, split, **kw))
  whole = load("train")
  assert whole == load("train")  # deterministic
  assert len(set(whole)) == 120

  def assert_proportional(examples, where):
    counts = np.bincount([label for _, label in examples], minlength=3)
    want = len(examples) * np.array(list(sizes.values())) / 120
    assert np.all(np.abs(counts - want) <= 1), (where, counts.tolist(), want.tolist())

  labels = np.array([label for _, label in whole])
  for start in range(120):  # every contiguous range of the order, hence every slice
    for stop in range(start + 1, 121):
      counts = np.bincount(labels[start:stop], minlength=3)
      assert np.all(np.abs(counts - (stop - start) * np.array([60, 40, 20]) / 120) <= 1)
  for split, size in [("train[:60]", 60), ("train[:50%]", 60), ("train[10:70]", 60),
                      ("train[25%:75%]", 60), ("train[-30:]", 30), ("train[:10]", 10)]:
    examples = load(split)
    assert len(examples) == size
    assert {label for _, label in examples} == {0, 1, 2}, split
    assert_proportional(examples, split)
  # The slices cut one fixed order, as their syntax says.
  first, second = load("train[:50%]"), load("train[50%:]")
  assert not set(first) & set(second) and first + second == whole
  assert load("train[10:70]") == whole[10:70] == load("train[:70]")[10:]
  assert load("train[-30:]") == whole[-30:]
  assert load("train[:30]+train[30:]") == whole
  # Each process's shard of a slice is disjoint from the others' and proportional too.
  shards = [load("train[:60]", process_index=i, process_count=2) for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert set(shards[0]) | set(shards[1]) == set(load("train[:60]"))
  for shard in shards:
    assert len(shard) == 30
    assert_proportional(shard, "a shard of train[:60]")



def test_unreadable_images_are_skipped_by_name_or_stop_a_strict_load(tmp_path):
  """A truncated PNG used to end training mid-run with a TF InvalidArgumentError
  ('Invalid PNG data, size 95') that named no file."""
  write_broken_images(tmp_path)
  name = f"image_folder:{tmp_path}"
  with pytest.warns(data.DataWarning) as caught:
    split = data.load_split(name, "train")
  message = " ".join(str(w.message) for w in caught)
  assert "2 of 26 file(s)" in message
  assert "zz_truncated.png (Invalid PNG data" in message
  assert "zz_text.png (Unknown image file format" in message
  assert "._000.png" not in message
  assert split.num_examples == split.total_examples == 24 and len(split.skipped_files) == 2

  # Two epochs of training batches and a whole evaluation pass run through.
  batches = first_batches(train_stream(split, "none", batch_size=8, image_size=8, shuffle_buffer=100), 6)
  for epoch in (batches[:3], batches[3:]):
    labels = np.concatenate([b["label"] for b in epoch])
    assert np.bincount(labels).tolist() == [8, 8, 8]
  evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=10, image_size=8)))
  assert len(evals) == 3 and float(sum(b["mask"].sum() for b in evals)) == 24

  with pytest.raises(ValueError, match=r"2 of 26 file\(s\).*not readable PNG/JPEG") as info:
    data.load_split(name, "train", strict=True)
  assert "zz_truncated.png" in str(info.value) and "zz_text.png" in str(info.value)



def test_an_empty_class_folder_is_named_and_skipped_or_refused_under_strict(tmp_path):
  """It used to add a class silently (num_classes=4 for 3 classes with images)."""
  from helpers import write_image_folder
  root = write_image_folder(tmp_path, {"train": "abc", "test": "abc"})
  (root / "train" / "d").mkdir()
  (root / "train" / "d" / "notes.txt").write_text("not an image")
  with pytest.warns(data.DataWarning, match=r"class folder\(s\) \['d'\] hold no "
                    r"images .*; skipped: they are not classes"):
    split = data.load_split(f"image_folder:{root}", "train")
  assert split.num_classes == 3 and split.class_names == ("a", "b", "c")
  assert data.dataset_num_classes(f"image_folder:{root}") == 3
  with pytest.raises(ValueError, match=r"class folder\(s\) \['d'\] hold no images .*; add "
                     "images or remove the folder"):
    data.load_split(f"image_folder:{root}", "train", strict=True)

