"""mssl.data.pipeline: tfds splits (mocked and embedded), image folders, encoded splits and
their caches, and the training and evaluation streams (sharding, determinism, resume)."""


import numpy as np
import pytest
import tensorflow_datasets as tfds

from mssl import data

from helpers import NO_COLOUR

from data.folders import digest, first_batches, train_stream, write_photos


@pytest.mark.parametrize("name,image,preset", [("cifar10", 32, "byol_cifar"),
                                               ("imagenet2012", 64, "mocov3")])
def test_mock_tfds_batches(name, image, preset):
  with tfds.testing.mock_data(num_examples=24):
    split = data.load_split(name, "train", data_dir="/nonexistent")
    (batch,) = first_batches(train_stream(split, preset, image_size=image, num_views=3))
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



def test_two_processes_read_disjoint_shards_covering_the_split(tfds_dir):
  seen = []
  for index in range(2):
    split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir,
                            process_index=index, process_count=2)
    assert split.num_examples == 2_500
    seen.append({digest(e["image"]) for e in tfds.as_numpy(split.dataset)})
  whole = {digest(e["image"]) for e in tfds.as_numpy(
      data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir).dataset)}
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == whole and len(whole) == 5_000
  with pytest.raises(ValueError, match="process_index must be in"):
    data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir, process_index=2,
                    process_count=2)



def test_same_seed_same_batches_and_resume(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  make = lambda seed: (lambda start: train_stream(split, "mocov3_cifar", seed=seed,
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
  tuned = train_stream(split, "mocov3_cifar", seed=3, shuffle_buffer=500)
  fixed = train_stream(split, "mocov3_cifar", seed=3, shuffle_buffer=500, autotune=False)
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
  ds = train_stream(split, "none", batch_size=50, shuffle_buffer=100)
  epochs = [np.concatenate([b["label"] for b in first_batches(ds, 2)])]
  it = iter(tfds.as_numpy(ds))
  labels = [next(it)["label"] for _ in range(4)]
  first, second = np.concatenate(labels[:2]), np.concatenate(labels[2:])
  assert sorted(first.tolist()) == sorted(second.tolist())  # each epoch covers the shard
  assert not np.array_equal(first, second)                  # in a new order
  del epochs



def test_multi_crop_and_view_count(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  (batch,) = first_batches(train_stream(split, "byol_cifar", num_views=4, num_small_crops=2,
                           small_size=16))
  assert [v.shape for v in batch["views"]] == [(8, 32, 32, 3)] * 4 + [(8, 16, 16, 3)] * 2
  with pytest.raises(ValueError, match="num_views must be at least 1"):
    train_stream(split, num_views=0)



def test_eval_pads_to_a_fixed_number_of_batches(tfds_dir):
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir,
                          process_index=1, process_count=3)  # 1,666 or 1,667 examples
  num = data.eval_num_batches(5_000, 3, 256)
  batches = list(tfds.as_numpy(data.eval_dataset(split, batch_size=256, image_size=32,
                                                 crop_fraction=1.0, num_batches=num)))
  assert len(batches) == num == 7
  assert float(sum(b["mask"].sum() for b in batches)) == split.num_examples
  assert np.all(batches[-1]["label"][batches[-1]["mask"] == 0] == -1)



def test_device_augment_stream_is_the_float_stream_without_colour(tfds_dir):
  """Through train_dataset: the same examples in the same order, each view the float
  pipeline's (colour off) to within rounding; labels identical; uint8 out."""
  split = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  kw = dict(views="mocov3_cifar", batch_size=16, seed=4, shuffle_buffer=200,
            num_small_crops=1, small_size=12)
  views = data.preset("mocov3_cifar", **NO_COLOUR)
  want = first_batches(data.train_dataset(split, image_size=32, views=views,
                                   **{k: v for k, v in kw.items() if k != "views"}), 2)
  got = first_batches(data.train_dataset(split, image_size=32, views=views, device_augment=True,
                                  **{k: v for k, v in kw.items() if k != "views"}), 2)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w["label"], g["label"])
    assert [v.shape for v in g["views"]] == [(16, 32, 32, 3)] * 2 + [(16, 12, 12, 3)]
    for wv, gv in zip(w["views"], g["views"]):
      assert gv.dtype == np.uint8 and wv.dtype == np.float32
      np.testing.assert_allclose(gv, wv * 255, rtol=0, atol=0.5 + 1e-3)



@pytest.mark.parametrize("suffixes", [(".jpg",), (".png",), (".jpg", ".png", ".jpeg")])
def test_encoded_folders_train_uint8_views_and_evaluate(tmp_path, suffixes):
  """JPEG, PNG and mixed folders load encoded (bytes + file name), train uint8 views of
  the requested shapes (large and small crops) whatever the cache decision, and evaluate
  exactly as the decoded split does."""
  write_photos(tmp_path, suffixes)
  name = f"image_folder:{tmp_path}"
  encoded = data.load_split(name, "train", encoded=True)
  decoded = data.load_split(name, "train")
  assert encoded.encoded and not decoded.encoded
  assert encoded.encoded_bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.*"))
  example = next(iter(tfds.as_numpy(encoded.dataset)))
  assert isinstance(example["image"], bytes) and example["name"].decode().startswith(
      str(tmp_path))
  for cache in ("never", "auto"):  # per-view window decoding; decoded whole and cached
    (batch,) = first_batches(train_stream(encoded, "byol", batch_size=4, image_size=24, cache=cache,
                             num_small_crops=2, small_size=8, device_augment=True))
    assert [v.shape for v in batch["views"]] == [(4, 24, 24, 3)] * 2 + [(4, 8, 8, 3)] * 2
    assert all(v.dtype == np.uint8 for v in batch["views"])
    assert batch["views"][0].std() > 5 and not np.array_equal(*batch["views"][:2])
    assert set(batch["label"]) <= {0, 1}
  (old,) = first_batches(train_stream(encoded, "byol", batch_size=4, image_size=24))  # the float path
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
  write_photos(tmp_path, (".jpg",), count=10)
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  make = lambda seed: (lambda start: train_stream(split, "mocov3", batch_size=4, image_size=16,
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



def test_crop_on_device_batches_whole_uint8_images_and_resumes(tfds_dir):
  """The host only shuffles and batches: each example's whole image once, uint8, in the
  same order as the host-cropping stream (same shuffle), and a restart at batch n gives
  batch n."""
  split = data.load_split("mssl_shapes/32", "train[:64]", data_dir=tfds_dir)
  whole = train_stream(split, "mocov3_cifar", image_size=16, device_augment=True,
                 crop_on_device=True)
  cropped = train_stream(split, "mocov3_cifar", image_size=16, device_augment=True)
  a, b = first_batches(whole, 3), first_batches(cropped, 3)
  assert len(a[0]["views"]) == 1 and a[0]["views"][0].shape == (8, 32, 32, 3)
  assert a[0]["views"][0].dtype == np.uint8
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["label"], y["label"])
  later = train_stream(split, "mocov3_cifar", image_size=16, device_augment=True,
                 crop_on_device=True, start_batch=2)
  np.testing.assert_array_equal(first_batches(later)[0]["views"][0], a[2]["views"][0])
  with pytest.raises(ValueError, match="crop_on_device=True needs device_augment=True"):
    train_stream(split, device_augment=False, crop_on_device=True)

