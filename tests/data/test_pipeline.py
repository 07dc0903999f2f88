"""mssl.data.pipeline: tfds splits (mocked and embedded), image folders, encoded splits and
their caches, and the training and evaluation streams (sharding, determinism, resume)."""

import hashlib
import pathlib
import shutil
import warnings

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mssl import data
from mssl.data import augment

from helpers import NO_COLOUR, _photo


def _train(split, views="simclr_cifar", **kw):
  kw.setdefault("batch_size", 8)
  kw.setdefault("image_size", 32)
  return data.train_dataset(split, views=data.preset(views), **kw)


def _first(ds, n=1):
  it = iter(tfds.as_numpy(ds))
  return [next(it) for _ in range(n)]


# ------------------------------------------------------------ tfds (mocked) ------------
@pytest.mark.parametrize("name,image,preset", [("cifar10", 32, "byol_cifar"),
                                               ("imagenet2012", 64, "mocov3")])
def test_mock_tfds_batches(name, image, preset):
  with tfds.testing.mock_data(num_examples=24):
    split = data.load_split(name, "train", data_dir="/nonexistent")
    (batch,) = _first(_train(split, preset, image_size=image, num_views=3))
    evals = list(tfds.as_numpy(data.eval_dataset(
        data.load_split(name, "validation" if name == "imagenet2012" else "test"),
        batch_size=10, image_size=image)))
  views = batch["views"]
  assert len(views) == 3
  for v in views:
    assert v.shape == (8, image, image, 3) and v.dtype == np.float32
    assert v.min() >= 0.0 and v.max() <= 1.0 and v.std() > 0.01
  assert not np.allclose(views[0], views[1])  # the views differ
  assert batch["label"].shape == (8,) and batch["label"].dtype == np.int64
  assert evals[0]["image"].shape == (10, image, image, 3)
  assert sum(float(b["mask"].sum()) for b in evals) == 24


def test_missing_dataset_error_names_dataset_dir_and_fix(tmp_path):
  with pytest.raises(data.DatasetNotReadyError) as info:
    data.load_split("cifar10", "train", data_dir=str(tmp_path))
  message = str(info.value)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert "tfds build cifar10" in message
  with pytest.raises(data.DatasetNotReadyError, match="downloads/manual"):
    data.load_split("imagenet2012", "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown tfds dataset 'cifar11'"):
    data.load_split("cifar11", "train", data_dir=str(tmp_path))


def test_unknown_tfds_name_is_reported_as_unknown_with_close_matches(tmp_path):
  """Validation used to call an unknown name 'not prepared' (and suggest building it)."""
  for known in ("cifar10", "mssl_shapes/32", "imagenette/320px", "cifar10:3.*.*",
                "image_folder:/anywhere", "huggingface:mnist"):
    assert data.check_dataset_name(known) is None, known
  message = data.check_dataset_name("cifar11")
  assert message.startswith("unknown tfds dataset 'cifar11'. Close matches: cifar10")
  assert "cifar100" in message and "prepared" not in message
  assert "Close matches: mssl_shapes" in data.check_dataset_name("mssl_shape/32")
  message = data.check_dataset_name("imagenette/321px")
  assert "unknown config '321px' of tfds dataset 'imagenette'" in message
  assert "imagenette/320px" in message
  assert "not a tfds dataset name" in data.check_dataset_name("cifar 10")
  with pytest.raises(ValueError, match="unknown tfds dataset 'cifar11'. Close matches: "
                                       "cifar10"):
    data.load_split("cifar11", "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown config '33' of tfds dataset 'mssl_shapes'"):
    data.load_split("mssl_shapes/33", "train", data_dir=str(tmp_path))


# ------------------------------------------------------------ image folders ------------
def _write_folder(root: pathlib.Path, labelled=True, count=6, size=40):
  rng = np.random.default_rng(0)
  for i in range(count):
    label = ("cats", "dogs")[i % 2]
    folder = root / "train" / label if labelled else root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size, size + 8 * (i % 2), 3), dtype=np.uint8)
    suffix = ".png" if i % 3 else ".jpg"
    PIL.Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")


def test_image_folder_loads_with_labels(tmp_path):
  _write_folder(tmp_path)
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_examples == 6 and split.num_classes == 2
  assert split.class_names == ("cats", "dogs")
  examples = list(tfds.as_numpy(split.dataset))
  assert sorted(int(e["label"]) for e in examples) == [0, 0, 0, 1, 1, 1]
  assert {e["image"].shape for e in examples} == {(40, 40, 3), (40, 48, 3)}
  (batch,) = _first(_train(split, "simclr", batch_size=4, image_size=24))
  assert batch["views"][0].shape == (4, 24, 24, 3)
  evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=4, image_size=32)))
  assert [b["image"].shape for b in evals] == [(4, 32, 32, 3)] * 2
  assert float(sum(b["mask"].sum() for b in evals)) == 6


def test_unlabelled_image_folder(tmp_path):
  _write_folder(tmp_path, labelled=False, count=3)
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_classes is None
  assert [int(e["label"]) for e in tfds.as_numpy(split.dataset)] == [-1, -1, -1]


def test_image_folder_errors(tmp_path):
  with pytest.raises(data.DatasetNotReadyError, match="does not exist.*<split>/<label>"):
    data.load_split(f"image_folder:{tmp_path}", "train")
  (tmp_path / "train" / "cats").mkdir(parents=True)
  with pytest.raises(ValueError, match="holds no images"):
    data.load_split(f"image_folder:{tmp_path}", "train")
  _write_folder(tmp_path)
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


COLOURS = {"a": (220, 40, 40), "b": (40, 220, 40), "c": (40, 40, 220), "d": (200, 200, 40)}


def _write_classes(root: pathlib.Path, split: str, counts: dict, size: int = 8):
  """``counts[name]`` PNGs per class: the class's colour plus noise, each image distinct."""
  for name, count in counts.items():
    folder = root / split / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
      noise = np.random.default_rng([ord(name), i, len(split)]).integers(-30, 30,
                                                                         (size, size, 3))
      pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
      PIL.Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def _contents(split):
  """``[(digest, label)]`` of a split's examples, in the order it yields them."""
  return [(_digest(e["image"]), int(e["label"])) for e in tfds.as_numpy(split.dataset)]


def test_folder_label_ids_come_from_the_training_split_for_every_split(tmp_path):
  """A test split without class 'a' keeps 'b' = 1, 'c' = 2 (was re-indexed from 0:
  every label off by one, kNN 0.0 on these separable colours)."""
  from mssl.eval import metrics
  _write_classes(tmp_path, "train", {"a": 12, "b": 12, "c": 12})
  _write_classes(tmp_path, "test", {"b": 6, "c": 6})
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
  assert data.folder_class_names(str(tmp_path)) == ("a", "b", "c")

  _write_classes(tmp_path, "test", {"d": 2})
  with pytest.raises(ValueError, match=r"class folder\(s\) \['d'\] that the training split "
                                       r"'train' lacks"):
    data.load_split(name, "test")
  _write_classes(tmp_path / "one", "train", {"a": 3})
  with pytest.warns(data.DataWarning, match=r"one class \('a'\).*100%"):
    assert data.load_split(f"image_folder:{tmp_path / 'one'}", "train").num_classes == 1


def test_folder_slices_hold_every_class_in_proportion(tmp_path):
  """Slices used to take files in sorted order: train[:60] of 3 x 40 held 2 classes."""
  sizes = {"a": 60, "b": 40, "c": 20}
  _write_classes(tmp_path, "train", sizes)
  name = f"image_folder:{tmp_path}"
  load = lambda split, **kw: _contents(data.load_split(name, split, **kw))
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


def _write_broken_images(root: pathlib.Path):
  """3 x 8 good PNGs; a truncated PNG and a text file named .png sorted last; a hidden
  macOS resource fork (ignored)."""
  _write_classes(root, "train", {"a": 8, "b": 8, "c": 8})
  good = (root / "train" / "c" / "000.png").read_bytes()
  (root / "train" / "c" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
  (root / "train" / "c" / "zz_text.png").write_text("this is not an image\n")
  (root / "train" / "a" / "._000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")


def test_unreadable_images_are_skipped_by_name_or_stop_a_strict_load(tmp_path):
  """A truncated PNG used to end training mid-run with a TF InvalidArgumentError
  ('Invalid PNG data, size 95') that named no file."""
  _write_broken_images(tmp_path)
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
  batches = _first(_train(split, "none", batch_size=8, image_size=8, shuffle_buffer=100), 6)
  for epoch in (batches[:3], batches[3:]):
    labels = np.concatenate([b["label"] for b in epoch])
    assert np.bincount(labels).tolist() == [8, 8, 8]
  evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=10, image_size=8)))
  assert len(evals) == 3 and float(sum(b["mask"].sum() for b in evals)) == 24

  with pytest.raises(ValueError, match=r"2 of 26 file\(s\).*not readable PNG/JPEG") as info:
    data.load_split(name, "train", strict=True)
  assert "zz_truncated.png" in str(info.value) and "zz_text.png" in str(info.value)


def test_an_image_that_fails_only_when_decoded_is_skipped_by_name(tmp_path):
  """Damage inside a PNG (its header and end intact) passes the load-time check; the
  pipeline then skips the file with a warning naming it instead of stopping."""
  _write_classes(tmp_path, "train", {"a": 4, "b": 4}, size=32)
  damaged = tmp_path / "train" / "b" / "002.png"
  raw = bytearray(damaged.read_bytes())
  raw[60:-20] = bytes(len(raw) - 80)
  damaged.write_bytes(bytes(raw))
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_examples == 8  # not caught at load
  with pytest.warns(data.DataWarning, match=r"skipped 1 image\(s\) that failed to decode "
                                            r"while reading: .*002\.png"):
    examples = list(tfds.as_numpy(split.dataset))
  assert sorted(int(e["label"]) for e in examples) == [0, 0, 0, 0, 1, 1, 1]
  strict = data.load_split(f"image_folder:{tmp_path}", "train", strict=True)
  with pytest.raises(tf.errors.OpError, match=r"failed to decode while reading "
                                              r"\(strict=True\): .*002\.png"):
    list(tfds.as_numpy(strict.dataset))


def test_auto_cache_keeps_small_folders_decoded(tmp_path, monkeypatch):
  """cache="auto" never cached a folder (its image shape is not fixed): every epoch
  re-read and re-decoded every file."""
  _write_classes(tmp_path, "train", {"a": 4, "b": 4, "c": 4})
  (tmp_path / "train" / "c" / "big.jpg").parent.mkdir(exist_ok=True)
  PIL.Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "train" / "c" /
                                                            "big.jpg")
  name = f"image_folder:{tmp_path}"
  split = data.load_split(name, "train")
  assert split.decoded_bytes == 12 * 8 * 8 * 3 + 20 * 30 * 3  # from the PNG/JPEG headers
  shards = [data.load_split(name, "train", process_index=i, process_count=2)
            for i in range(2)]
  assert sum(s.decoded_bytes for s in shards) == split.decoded_bytes
  assert data.pipeline._should_cache(split, "auto")
  assert not data.pipeline._should_cache(split, "never")
  monkeypatch.setattr(data.pipeline, "CACHE_LIMIT_BYTES", split.decoded_bytes)
  assert not data.pipeline._should_cache(split, "auto")
  monkeypatch.undo()
  # Cached after one epoch: later epochs no longer read the files.
  stream = iter(tfds.as_numpy(_train(split, "none", batch_size=13, image_size=8)))
  first = next(stream)["label"]
  shutil.rmtree(tmp_path / "train")
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a re-read would warn about (skip) missing files
    later = [next(stream)["label"] for _ in range(3)]
  for labels in [first] + later:
    assert np.bincount(labels).tolist() == [4, 4, 5]


# ------------------------------------------------------------ sharding & determinism ---
def _digest(image):
  return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_two_processes_read_disjoint_shards_covering_the_split(tfds_dir):
  seen = []
  for index in range(2):
    split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir,
                            process_index=index, process_count=2)
    assert split.num_examples == 2_500
    seen.append({_digest(e["image"]) for e in tfds.as_numpy(split.dataset)})
  whole = {_digest(e["image"]) for e in tfds.as_numpy(
      data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir).dataset)}
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == whole and len(whole) == 5_000
  with pytest.raises(ValueError, match="process_index must be in"):
    data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir, process_index=2,
                    process_count=2)


def test_same_seed_same_batches_and_resume(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  make = lambda seed: (lambda start: _train(split, "mocov3_cifar", seed=seed,
                                            start_batch=start, shuffle_buffer=1000))
  a = data.InputIterator(make(0))
  batches = [next(a) for _ in range(5)]
  assert a.get_state() == {"position": 5}
  b = data.InputIterator(make(0))
  for want in batches:
    got = next(b)
    for x, y in zip(got["views"], want["views"]):
      np.testing.assert_array_equal(x, y)
  c = [next(data.InputIterator(make(1))) for _ in range(1)][0]
  assert not np.array_equal(c["views"][0], batches[0]["views"][0])
  # Restored at position 3, the pipeline continues with batch 4 exactly.
  resumed = data.InputIterator.restore(make(0), {"position": 3})
  nxt = next(resumed)
  np.testing.assert_array_equal(nxt["label"], batches[3]["label"])
  for x, y in zip(nxt["views"], batches[3]["views"]):
    np.testing.assert_array_equal(x, y)
  assert resumed.position == 4


def test_autotune_switch_changes_the_options_not_the_batches(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  tuned = _train(split, "mocov3_cifar", seed=3, shuffle_buffer=500)
  fixed = _train(split, "mocov3_cifar", seed=3, shuffle_buffer=500, autotune=False)
  assert tuned.options().autotune.enabled is True
  assert fixed.options().autotune.enabled is False
  for want, got in zip(tuned.take(3).as_numpy_iterator(), fixed.take(3).as_numpy_iterator()):
    for x, y in zip(want["views"], got["views"]):
      np.testing.assert_array_equal(x, y)
  evaluation = data.eval_dataset(split, batch_size=64, image_size=16, autotune=False)
  assert evaluation.options().autotune.enabled is False


def test_epochs_reshuffle_and_cover_the_data(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir,
                          process_index=0, process_count=50)  # 100 examples
  ds = _train(split, "none", batch_size=50, shuffle_buffer=100)
  epochs = [np.concatenate([b["label"] for b in _first(ds, 2)])]
  it = iter(tfds.as_numpy(ds))
  labels = [next(it)["label"] for _ in range(4)]
  first, second = np.concatenate(labels[:2]), np.concatenate(labels[2:])
  assert sorted(first.tolist()) == sorted(second.tolist())  # each epoch covers the shard
  assert not np.array_equal(first, second)                  # in a new order
  del epochs


def test_multi_crop_and_view_count(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  (batch,) = _first(_train(split, "byol_cifar", num_views=4, num_small_crops=2,
                           small_size=16))
  assert [v.shape for v in batch["views"]] == [(8, 32, 32, 3)] * 4 + [(8, 16, 16, 3)] * 2
  with pytest.raises(ValueError, match="num_views must be at least 1"):
    _train(split, num_views=0)


def test_eval_pads_to_a_fixed_number_of_batches(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir,
                          process_index=1, process_count=3)  # 1,666 or 1,667 examples
  num = data.eval_num_batches(5_000, 3, 256)
  batches = list(tfds.as_numpy(data.eval_dataset(split, batch_size=256, image_size=32,
                                                 crop_fraction=1.0, num_batches=num)))
  assert len(batches) == num == 7
  assert float(sum(b["mask"].sum() for b in batches)) == split.num_examples
  assert np.all(batches[-1]["label"][batches[-1]["mask"] == 0] == -1)


# ------------------------------------------------------------ uint8 host views ----------
def test_device_augment_stream_is_the_float_stream_without_colour(tfds_dir):
  """Through train_dataset: the same examples in the same order, each view the float
  pipeline's (colour off) to within rounding; labels identical; uint8 out."""
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  kw = dict(views="mocov3_cifar", batch_size=16, seed=4, shuffle_buffer=200,
            num_small_crops=1, small_size=12)
  views = data.preset("mocov3_cifar", **NO_COLOUR)
  want = _first(data.train_dataset(split, image_size=32, views=views,
                                   **{k: v for k, v in kw.items() if k != "views"}), 2)
  got = _first(data.train_dataset(split, image_size=32, views=views, device_augment=True,
                                  **{k: v for k, v in kw.items() if k != "views"}), 2)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["label"], g["label"])
    assert [v.shape for v in g["views"]] == [(16, 32, 32, 3)] * 2 + [(16, 12, 12, 3)]
    for wv, gv in zip(w["views"], g["views"]):
      assert gv.dtype == np.uint8 and wv.dtype == np.float32
      np.testing.assert_allclose(gv, wv * 255, rtol=0, atol=0.5 + 1e-3)


def _write_photos(root: pathlib.Path, suffixes=(".jpg", ".png"), count=8, size=(48, 64)):
  rng = np.random.default_rng(2)
  for i in range(count):
    folder = root / "train" / ("cats", "dogs")[i % 2]
    folder.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(_photo(rng, *size)).save(folder / f"{i:03d}{suffixes[i % len(suffixes)]}")


@pytest.mark.parametrize("suffixes", [(".jpg",), (".png",), (".jpg", ".png", ".jpeg")])
def test_encoded_folders_train_uint8_views_and_evaluate(tmp_path, suffixes):
  """JPEG, PNG and mixed folders load encoded (bytes + file name), train uint8 views of
  the requested shapes (large and small crops) whatever the cache decision, and evaluate
  exactly as the decoded split does."""
  _write_photos(tmp_path, suffixes)
  name = f"image_folder:{tmp_path}"
  encoded = data.load_split(name, "train", encoded=True)
  decoded = data.load_split(name, "train")
  assert encoded.encoded and not decoded.encoded
  assert encoded.encoded_bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.*"))
  example = next(iter(tfds.as_numpy(encoded.dataset)))
  assert isinstance(example["image"], bytes) and example["name"].decode().startswith(
      str(tmp_path))
  for cache in ("never", "auto"):  # per-view window decoding; decoded whole and cached
    (batch,) = _first(_train(encoded, "byol", batch_size=4, image_size=24, cache=cache,
                             num_small_crops=2, small_size=8, device_augment=True))
    assert [v.shape for v in batch["views"]] == [(4, 24, 24, 3)] * 2 + [(4, 8, 8, 3)] * 2
    assert all(v.dtype == np.uint8 for v in batch["views"])
    assert batch["views"][0].std() > 5 and not np.array_equal(*batch["views"][:2])
    assert set(batch["label"]) <= {0, 1}
  (old,) = _first(_train(encoded, "byol", batch_size=4, image_size=24))  # the float path
  assert old["views"][0].dtype == np.float32
  evals = [list(tfds.as_numpy(data.eval_dataset(s, batch_size=3, image_size=16)))
           for s in (encoded, decoded)]
  assert len(evals[0]) == len(evals[1]) == 3
  for a, b in zip(*evals):
    assert a["image"].dtype == np.float32
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(a[key], b[key])


def test_encoded_stream_is_deterministic_and_resumes_exactly(tmp_path):
  """device_augment=True on an encoded JPEG folder (windows decoded per view): the stream
  rebuilt at start_batch=n is the uninterrupted stream's batch n onward; another seed
  differs."""
  _write_photos(tmp_path, (".jpg",), count=10)
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  make = lambda seed: (lambda start: _train(split, "mocov3", batch_size=4, image_size=16,
                                            seed=seed, start_batch=start, cache="never",
                                            device_augment=True))
  batches = [next(it) for it in [data.InputIterator(make(0))] for _ in range(5)]
  again = data.InputIterator(make(0))
  for want in batches[:2]:
    got = next(again)
    for x, y in zip(got["views"], want["views"]):
      np.testing.assert_array_equal(x, y)
  resumed = data.InputIterator.restore(make(0), {"position": 3})
  for want in batches[3:]:
    got = next(resumed)
    np.testing.assert_array_equal(got["label"], want["label"])
    for x, y in zip(got["views"], want["views"]):
      np.testing.assert_array_equal(x, y)
  other = next(data.InputIterator(make(1)))
  assert not np.array_equal(other["views"][0], batches[0]["views"][0])


def test_encoded_image_failing_in_training_keeps_its_slot_and_is_named(tmp_path):
  """An encoded image damaged inside (header and end marker intact: the load-time check
  passes it) fails only when a view decodes it: its slot becomes a grey placeholder with
  label -1, a DataWarning names the file, and the stream goes on (strict: stops)."""
  _write_classes(tmp_path, "train", {"a": 4, "b": 4}, size=32)
  damaged = tmp_path / "train" / "b" / "002.png"
  raw = bytearray(damaged.read_bytes())
  raw[60:-20] = bytes(len(raw) - 80)
  damaged.write_bytes(bytes(raw))
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  assert split.num_examples == 8
  with pytest.warns(data.DataWarning, match=r"replaced 1 image\(s\) that failed to decode "
                                            r"while reading.*002\.png"):
    (batch,) = _first(_train(split, "none", batch_size=8, image_size=8, cache="never",
                             device_augment=True))
  assert sorted(batch["label"].tolist()) == [-1, 0, 0, 0, 0, 1, 1, 1]
  grey = batch["views"][0][batch["label"] == -1]
  assert grey.shape == (1, 8, 8, 3) and np.all(grey == 128)
  # The placeholder keeps the slot: a stream resumed past the failure is exact.
  make = lambda start: _train(split, "none", batch_size=3, image_size=8, cache="never",
                              start_batch=start, device_augment=True)
  with pytest.warns(data.DataWarning, match=r"002\.png"):
    stream = data.InputIterator(make)
    want = [next(stream) for _ in range(6)]
    resumed = data.InputIterator(make, position=4)
    got = [next(resumed) for _ in range(2)]
  assert sum((b["label"] == -1).sum() for b in want) >= 2  # 18 slots: over two epochs of 8
  for w, g in zip(want[4:], got):
    np.testing.assert_array_equal(w["label"], g["label"])
    np.testing.assert_array_equal(w["views"][0], g["views"][0])
  with pytest.warns(data.DataWarning, match=r"skipped 1 image\(s\).*002\.png"):
    evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=8, image_size=8)))
  assert float(evals[0]["mask"].sum()) == 7
  # A failure at the very end of a finite pass is reported too (by the end marker).
  order = [e["name"].decode() for e in tfds.as_numpy(split.dataset)]
  last = pathlib.Path(order[-1])
  last.write_bytes(bytes(raw))  # the damaged file's bytes: header and end marker intact
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  with pytest.warns(data.DataWarning) as caught:
    evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=8, image_size=8)))
  assert float(evals[0]["mask"].sum()) == 6
  messages = sorted(str(w.message) for w in caught)
  assert len(messages) == 2 and all("skipped 1 image(s)" in m for m in messages)
  assert {pathlib.Path(m.split(": ")[-1]).name for m in messages} == {"002.png", last.name}
  strict = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True, strict=True)
  with pytest.raises(tf.errors.OpError, match=r"failed to decode while reading "
                                              r"\(strict=True\): .*002\.png"):
    _first(_train(strict, "none", batch_size=8, image_size=8, cache="never",
                  device_augment=True))


def test_encoded_tfds_splits_only_for_jpeg_features():
  """imagenet2012 (JPEG feature) comes encoded with its tfds ids as names; cifar10 (PNG,
  fixed shape, cached decoded) stays decoded. Both train uint8 views and evaluate."""
  with tfds.testing.mock_data(num_examples=12):
    imagenet = data.load_split("imagenet2012", "train", data_dir="/nonexistent",
                               encoded=True)
    cifar = data.load_split("cifar10", "train", data_dir="/nonexistent", encoded=True)
    assert imagenet.encoded and not cifar.encoded
    example = next(iter(tfds.as_numpy(imagenet.dataset)))
    assert example["image"][:3] == augment.JPEG_MAGIC and b"imagenet2012" in example["name"]
    for split, size in ((imagenet, 32), (cifar, 16)):
      (batch,) = _first(_train(split, "mocov3", batch_size=4, image_size=size,
                               device_augment=True))
      assert [v.shape for v in batch["views"]] == [(4, size, size, 3)] * 2
      assert batch["views"][0].dtype == np.uint8
      evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=5, image_size=size)))
      assert float(sum(b["mask"].sum() for b in evals)) == 12


def test_encoded_splits_cache_decoded_when_that_fits_else_their_bytes(tmp_path,
                                                                      monkeypatch):
  """cache="auto" on an encoded folder: decoded pixels cached when they fit (as a decoded
  split; no decoding after the first epoch), else the encoded bytes when those fit (no
  file reads after the first epoch; each view decodes its window), else nothing."""
  _write_photos(tmp_path, (".jpg",), count=6)
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  source = data.pipeline._training_source
  _, still_encoded = source(split, "auto", device_augment=True)
  assert not still_encoded                       # 6 x 48 x 64 x 3 bytes: cached decoded
  assert source(split, "never", device_augment=True)[1]
  assert not source(split, "never", device_augment=False)[1]  # float views: decoded
  monkeypatch.setattr(data.pipeline, "CACHE_LIMIT_BYTES", split.encoded_bytes + 1)
  assert split.encoded_bytes < split.decoded_bytes
  cached, still_encoded = source(split, "auto", device_augment=True)
  assert still_encoded                            # the bytes are cached, still encoded
  first = [(e["name"], e["image"]) for e in tfds.as_numpy(cached)]  # fills the cache
  assert len(first) == 6 and all(isinstance(image, bytes) for _, image in first)
  uncached, _ = source(split, "never", device_augment=True)
  shutil.rmtree(tmp_path / "train")
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a re-read would skip (warn about) the missing files
    assert [(e["name"], e["image"]) for e in tfds.as_numpy(cached)] == first
  with pytest.warns(data.DataWarning, match=r"skipped 6 image\(s\)"):
    assert list(tfds.as_numpy(uncached)) == []


# ------------------------------------------------------------ crop on device -----------
def test_crop_on_device_batches_whole_uint8_images_and_resumes(tfds_dir):
  """The host only shuffles and batches: each example's whole image once, uint8, in the
  same order as the host-cropping stream (same shuffle), and a restart at batch n gives
  batch n."""
  split = data.load_split("mssl_shapes/32", "train[:64]", data_dir=tfds_dir)
  whole = _train(split, "mocov3_cifar", image_size=16, device_augment=True,
                 crop_on_device=True)
  cropped = _train(split, "mocov3_cifar", image_size=16, device_augment=True)
  a, b = _first(whole, 3), _first(cropped, 3)
  assert len(a[0]["views"]) == 1 and a[0]["views"][0].shape == (8, 32, 32, 3)
  assert a[0]["views"][0].dtype == np.uint8
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["label"], y["label"])
  later = _train(split, "mocov3_cifar", image_size=16, device_augment=True,
                 crop_on_device=True, start_batch=2)
  np.testing.assert_array_equal(_first(later)[0]["views"][0], a[2]["views"][0])
  with pytest.raises(ValueError, match="crop_on_device=True needs device_augment=True"):
    _train(split, device_augment=False, crop_on_device=True)


def test_an_empty_class_folder_is_named_and_skipped_or_refused_under_strict(tmp_path):
  """It used to add a class silently (num_classes=4 for 3 classes with images)."""
  from helpers import write_image_folder
  root = write_image_folder(tmp_path, {"train": "abc", "test": "abc"})
  (root / "train" / "d").mkdir()
  (root / "train" / "d" / "notes.txt").write_text("not an image")
  with pytest.warns(data.pipeline.DataWarning, match=r"class folder\(s\) \['d'\] hold no "
                    r"images .*; skipped: they are not classes"):
    split = data.load_split(f"image_folder:{root}", "train")
  assert split.num_classes == 3 and split.class_names == ("a", "b", "c")
  assert data.pipeline.dataset_num_classes(f"image_folder:{root}") == 3
  with pytest.raises(ValueError, match=r"class folder\(s\) \['d'\] hold no images .*; add "
                     "images or remove the folder"):
    data.load_split(f"image_folder:{root}", "train", strict=True)
