"""mssl.data.cache: what cache="auto" keeps in memory (decoded pixels, encoded bytes, or
nothing) and the limit it decides by."""

import shutil
import warnings

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from mssl import data

from data.folders import train_stream, write_classes, write_photos


def test_auto_cache_keeps_small_folders_decoded(tmp_path, monkeypatch):
  """cache="auto" never cached a folder (its image shape is not fixed): every epoch
  re-read and re-decoded every file."""
  write_classes(tmp_path, "train", {"a": 4, "b": 4, "c": 4})
  (tmp_path / "train" / "c" / "big.jpg").parent.mkdir(exist_ok=True)
  PIL.Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "train" / "c" /
                                                            "big.jpg")
  name = f"image_folder:{tmp_path}"
  split = data.load_split(name, "train")
  assert split.decoded_bytes == 12 * 8 * 8 * 3 + 20 * 30 * 3  # from the PNG/JPEG headers
  shards = [data.load_split(name, "train", process_index=i, process_count=2)
            for i in range(2)]
  assert sum(s.decoded_bytes for s in shards) == split.decoded_bytes
  assert data.cache.caches_pixels(split, "auto")
  assert not data.cache.caches_pixels(split, "never")
  monkeypatch.setattr(data.cache, "CACHE_LIMIT_BYTES", split.decoded_bytes)
  assert not data.cache.caches_pixels(split, "auto")
  monkeypatch.undo()
  # Cached after one epoch: later epochs no longer read the files.
  stream = iter(tfds.as_numpy(train_stream(split, "none", batch_size=13, image_size=8)))
  first = next(stream)["label"]
  shutil.rmtree(tmp_path / "train")
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a re-read would warn about (skip) missing files
    later = [next(stream)["label"] for _ in range(3)]
  for labels in [first] + later:
    assert np.bincount(labels).tolist() == [4, 4, 5]



def test_encoded_splits_cache_decoded_when_that_fits_else_their_bytes(tmp_path,
                                                                      monkeypatch):
  """cache="auto" on an encoded folder: decoded pixels cached when they fit (as a decoded
  split; no decoding after the first epoch), else the encoded bytes when those fit (no
  file reads after the first epoch; each view decodes its window), else nothing."""
  write_photos(tmp_path, (".jpg",), count=6)
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  source = data.pipeline.training_source
  _, still_encoded = source(split, "auto", device_augment=True)
  assert not still_encoded                       # 6 x 48 x 64 x 3 bytes: cached decoded
  assert source(split, "never", device_augment=True)[1]
  assert not source(split, "never", device_augment=False)[1]  # float views: decoded
  monkeypatch.setattr(data.cache, "CACHE_LIMIT_BYTES", split.encoded_bytes + 1)
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



def _split(**fields):
  fields = {"dataset": None, "num_examples": 10, "total_examples": 10, "num_classes": 2,
            "image_shape": (32, 32, 3), **fields}
  return data.Split(**fields)


def test_the_policy_decides_by_the_known_sizes_and_rejects_unknown_modes(monkeypatch):
  monkeypatch.setattr(data.cache, "CACHE_LIMIT_BYTES", 10 * 32 * 32 * 3 + 1)
  fixed = _split()                                   # 30,720 bytes from the shape
  assert data.cache.caches_pixels(fixed, "auto")
  assert not data.cache.caches_pixels(_split(num_examples=11), "auto")  # over the limit
  assert not data.cache.caches_pixels(_split(image_shape=None), "auto")  # size unknown
  assert data.cache.caches_pixels(_split(image_shape=None, decoded_bytes=100), "auto")
  assert data.cache.caches_pixels(_split(num_examples=11), "always")
  assert not data.cache.caches_pixels(fixed, "never")
  encoded = _split(image_shape=None, encoded=True, encoded_bytes=500)
  assert data.cache.caches_encoded(encoded, "auto")       # pixels unknown, bytes fit
  assert not data.cache.caches_encoded(encoded, "never")
  assert not data.cache.caches_encoded(_split(image_shape=None, encoded=True), "auto")
  assert not data.cache.caches_decoded(encoded, "always")  # decoded first, then cached
  with pytest.raises(ValueError, match=r"cache must be one of \('auto', 'always', 'never'\); "
                                       r"got 'sometimes'"):
    data.cache.caches_pixels(fixed, "sometimes")
