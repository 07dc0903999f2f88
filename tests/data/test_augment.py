"""mssl.data.augment: the host's view operations (tf.image): the rotation, the uint8 views
of device_augment=True against the float views, and JPEG window decoding."""

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from mssl import data
from mssl.data import augment

from helpers import NO_COLOUR, _photo


def test_rotation_turns_images_counter_clockwise_and_keeps_other_draws():
  import math
  image = np.random.default_rng(0).uniform(size=(8, 8, 3)).astype(np.float32)
  quarter = augment.rotate(tf.constant(image), tf.constant(math.pi / 2)).numpy()
  np.testing.assert_allclose(quarter, np.rot90(image, 1), atol=1e-5)
  np.testing.assert_allclose(augment.rotate(tf.constant(image), tf.constant(0.0)).numpy(),
                             image, atol=1e-6)
  # Adding a rotation leaves every other random draw of a view as it was.
  big = tf.constant(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8))
  seed = tf.constant([3, 4], tf.int64)
  plain = augment.preset("simclr_cifar")
  no_turn = augment.preset("simclr_cifar", rotation=1e-9)
  a = augment.multi_view(big, seed, plain, 2, 16)
  b = augment.multi_view(big, seed, no_turn, 2, 16)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5)
  turned = augment.multi_view(big, seed, augment.preset("simclr_cifar", rotation=90.0), 2,
                              16)
  assert not np.allclose(turned[0].numpy(), a[0].numpy(), atol=1e-2)


def _jpeg_bytes(pixels, **kw):
  import io
  buffer = io.BytesIO()
  PIL.Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **kw)
  return buffer.getvalue()


def test_uint8_views_are_the_float_views_without_colour():
  """Same seeds -> same crop windows, scales, ratios and flips as the float path: with the
  colour operations off, each uint8 view is the float view x 255 rounded (|diff| <= 0.5;
  the resize commutes with the 1/255 scaling up to float rounding). Large views, small
  crops of multi-crop, both presets of an asymmetric pair, and a rotation."""
  image = tf.constant(_photo(np.random.default_rng(0), 61, 83))
  for views in (data.preset("mocov3", **NO_COLOUR), data.preset("simclr", **NO_COLOUR),
                data.preset("byol", rotation=30.0, **NO_COLOUR)):
    for i in range(12):
      seed = tf.constant([i, 5], tf.int64)
      want = augment.multi_view(image, seed, views, 2, 40, num_small_crops=2, small_size=12)
      got = augment.multi_view_uint8(image, seed, views, 2, 40, num_small_crops=2,
                                     small_size=12)
      assert [g.shape for g in got] == [(40, 40, 3)] * 2 + [(12, 12, 3)] * 2
      for w, g in zip(want, got):
        assert g.dtype == tf.uint8
        np.testing.assert_allclose(g.numpy(), w.numpy() * 255, rtol=0, atol=0.5 + 1e-3)
  # The windows really vary with the seed (not, say, always the whole image).
  shape = tf.constant([61, 83, 3])
  sizes = {tuple(augment.crop_window(shape, tf.constant([i, 0], tf.int64), (0.2, 1.0),
                                     (3 / 4, 4 / 3))[1].numpy()) for i in range(20)}
  assert len(sizes) > 10


def test_jpeg_crop_decoding_matches_decode_then_crop():
  """decode_and_crop_jpeg decodes only the window. Measured on photo-like JPEGs: without
  chroma subsampling it is decode-then-crop exactly; with it (4:2:0, 4:2:2: the common
  case) the window's interior is exact and only its one-pixel border differs, by up to
  6/255 (the chroma upsampling filter cannot see the neighbours outside the window).
  Asserted: interior exact, border within 16/255. After the resize to a view the
  border's share is small: views within 6/255, mean difference below 0.05/255."""
  rng = np.random.default_rng(1)
  for height, width, subsampling in [(97, 131, 0), (97, 131, 2), (120, 160, 1)]:
    raw = _jpeg_bytes(_photo(rng, height, width), subsampling=subsampling)
    full = tf.io.decode_jpeg(raw, channels=3).numpy().astype(int)
    for _ in range(60):
      y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
      h, w = rng.integers(3, height - y + 1), rng.integers(3, width - x + 1)
      crop = tf.image.decode_and_crop_jpeg(raw, [y, x, h, w], channels=3).numpy()
      diff = np.abs(crop.astype(int) - full[y:y + h, x:x + w])
      if subsampling == 0:
        assert diff.max() == 0
      assert diff[1:-1, 1:-1].max() == 0 and diff.max() <= 16, (y, x, h, w, diff.max())
  # Whole views: encoded JPEG (the windows' box, or each window, decoded) vs the decoded
  # image (cropped); decoding the whole JPEG is the decoded image's path exactly.
  raw = _jpeg_bytes(_photo(rng, 150, 200))
  image = tf.io.decode_jpeg(raw, channels=3)
  views = data.preset("mocov3")
  for mode in augment.JPEG_DECODES:
    diffs = []
    for i in range(12):
      seed = tf.constant([i, 9], tf.int64)
      a = augment.multi_view_uint8(tf.constant(raw), seed, views, 2, 48, 2, 16,
                                   encoded=True, jpeg_decode=mode)
      b = augment.multi_view_uint8(image, seed, views, 2, 48, 2, 16)
      diffs += [np.abs(x.numpy().astype(int) - y.numpy()) for x, y in zip(a, b)]
    assert max(d.max() for d in diffs) <= (0 if mode == "whole" else 6), mode
    assert np.mean([d.mean() for d in diffs]) < 0.05, mode
  with pytest.raises(ValueError, match="jpeg_decode must be one of"):
    augment.multi_view_uint8(tf.constant(raw), seed, views, 2, 48, encoded=True,
                             jpeg_decode="crop")
