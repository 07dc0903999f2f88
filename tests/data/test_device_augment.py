"""Device-side augmentation (mssl.data.device_augment): keys, each colour operation's
parameter ranges and probabilities against references (numpy, colorsys, the tf.data
version), the identity of presets that need nothing, sharding invariance, the on-device
crop, and an import without TensorFlow."""

import colorsys
import dataclasses
import itertools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.data import device_augment as da
from mssl.data.views import PRESETS, ViewConfig

LUMA = np.array([0.2989, 0.5870, 0.1140])
# Every colour operation off: tests switch on the one they look at.
OFF = ViewConfig(jitter=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                 grayscale=0.0, blur=0.0, solarize=0.0)

# Everything runs jitted: eager dispatch compiles each primitive on its own, which costs far
# more than one compilation of the whole function.
color = jax.jit(da.color_augment, static_argnames="cfg")
_view_keys = jax.jit(da.view_keys, static_argnums=(0, 2, 3))
hue = jax.jit(da.adjust_hue)
blur = jax.jit(da.gaussian_blur, static_argnums=2)


def keys_for(n, view=0, step=0, seed=0):
  return _view_keys(seed, jnp.int32(step), view, n)


def jitter_params(keys, cfg):
  return jax.jit(jax.vmap(lambda k: da.jitter_params(k, cfg)))(keys)


def u8(x):
  """The module's uint8 conversion (tf.image.convert_image_dtype's): x * float32(1/255)."""
  return np.asarray(x).astype(np.float32) * np.float32(1 / 255)


def rand_images(n, h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), np.uint8)


def binomial_ok(count, n, p, sds=4.5):
  return abs(count / n - p) <= sds * np.sqrt(p * (1 - p) / n)


def primitives(jaxpr):
  """Names of every primitive in a jaxpr, sub-jaxprs included."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          names |= primitives(inner)
  return names


# ------------------------------------------------------------------------ keys ---------
def test_view_keys_fold_seed_step_view_then_row():
  keys = da.view_keys(3, 7, 1, 5)
  assert keys.shape == (5,) and jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
  expected = jax.random.key(3)
  for data in (7, 1, 2):
    expected = jax.random.fold_in(expected, data)
  data = jax.random.key_data
  np.testing.assert_array_equal(data(keys[2]), data(expected))
  traced = jax.jit(da.view_keys, static_argnums=(0, 2, 3))(3, jnp.int32(7), 1, 5)
  np.testing.assert_array_equal(data(traced), data(keys))
  rows = np.concatenate([data(da.view_keys(3, s, v, 5)) for s in (7, 8) for v in (0, 1)])
  assert len({tuple(r) for r in rows}) == 20  # all rows, views and steps distinct


def test_deterministic_and_different_across_examples_views_and_steps():
  image = rand_images(1, 8, 8)
  batch = np.repeat(image, 6, axis=0)  # six copies of one image
  cfg = dataclasses.replace(PRESETS["simclr"][0], jitter=1.0)
  out = np.asarray(color(batch, keys_for(6), cfg=cfg))
  np.testing.assert_array_equal(out, np.asarray(color(batch, keys_for(6), cfg=cfg)))
  for i, j in itertools.combinations(range(6), 2):
    assert not np.array_equal(out[i], out[j]), (i, j)
  other_view = np.asarray(color(batch, keys_for(6, view=1), cfg=cfg))
  other_step = np.asarray(color(batch, keys_for(6, step=1), cfg=cfg))
  for other in (other_view, other_step):
    assert all(not np.array_equal(out[i], other[i]) for i in range(6))


def test_presets_without_colour_work_are_the_exact_uint8_conversion():
  assert not da.needs_device_work(PRESETS["none"][0])
  assert not da.needs_device_work(PRESETS["mae"][0])
  for name, views in PRESETS.items():
    if name not in ("none", "mae"):
      assert all(da.needs_device_work(v) for v in views), name
  x = rand_images(4, 6, 5)
  for name in ("none", "mae"):
    cfg = PRESETS[name][0]
    out = jax.jit(lambda v: da.augment_views(v, seed=0, step=1, configs=(cfg, cfg)))((x, x))
    for o in out:
      assert o.dtype == jnp.float32
      np.testing.assert_array_equal(np.asarray(o), u8(x))
    # Nothing but the conversion is traced: no random bits, no colour operation.
    jaxpr = jax.make_jaxpr(lambda v, k: da.color_augment(v, k, cfg))(x, keys_for(4)).jaxpr
    assert primitives(jaxpr) <= {"convert_element_type", "mul"}, primitives(jaxpr)


def test_disabled_operations_are_not_traced():
  x = rand_images(2, 8, 8)

  def traced(cfg):
    return primitives(jax.make_jaxpr(lambda v: da.color_augment(v, keys_for(2), cfg))(x).jaxpr)

  solarize_only = traced(dataclasses.replace(OFF, solarize=0.3))
  assert not solarize_only & {"sort", "pad", "dot_general"}, solarize_only
  assert "pad" in traced(dataclasses.replace(OFF, blur=0.3))          # the blur
  assert "sort" in traced(dataclasses.replace(OFF, jitter=0.8, hue=0.1))  # random order
  assert "dot_general" in traced(dataclasses.replace(OFF, grayscale=0.2))


# ------------------------------------------------------------------------ jitter -------
def test_brightness_factor_range_and_jitter_probability():
  cfg = dataclasses.replace(OFF, jitter=0.8, brightness=0.4)
  n = 2000
  x = np.full((n, 2, 2, 3), 0.5, np.float32)  # 0.5 * 1.4 stays below the clip
  ratio = np.asarray(color(x, keys_for(n), cfg=cfg)) / 0.5
  per_example = ratio[:, 0, 0, 0]
  np.testing.assert_allclose(ratio, per_example[:, None, None, None] * np.ones_like(ratio))
  changed = per_example[per_example != 1.0]
  assert binomial_ok(len(changed), n, 0.8)
  assert changed.min() >= 0.6 - 1e-6 and changed.max() <= 1.4 + 1e-6
  assert changed.min() < 0.61 and changed.max() > 1.39  # the whole range is drawn
  assert abs(changed.mean() - 1.0) < 0.02


def test_jitter_draws_factor_and_hue_ranges_and_random_order():
  cfg = PRESETS["simclr"][0]  # 0.8 / 0.8 / 0.8 / 0.2
  n = 2000
  factors, delta, order = jitter_params(keys_for(n), cfg)
  factors, delta, order = map(np.asarray, (factors, delta, order))
  assert factors.min() >= 0.2 and factors.max() <= 1.8
  assert (factors.min(0) < 0.21).all() and (factors.max(0) > 1.79).all()
  assert delta.min() >= -0.2 and delta.max() <= 0.2 and delta.min() < -0.199 and delta.max() > 0.199
  assert (np.sort(order, axis=1) == np.arange(4)).all()  # each row a permutation
  assert len({tuple(r) for r in order}) == 24            # every order occurs
  for op in range(4):                                    # each op first ~1/4 of the time
    assert binomial_ok((order[:, 0] == op).sum(), n, 0.25)
  _, _, order = jitter_params(keys_for(10), dataclasses.replace(cfg, hue=0.0))
  assert order.shape == (10, 3) and not (np.asarray(order) == 3).any()


def _reference_jitter(image, factors, delta, order):
  """numpy / colorsys: the tf.data formulas applied in the given order, clip after each."""
  x = image.astype(np.float64)
  for op in order:
    gray = x @ LUMA
    if op == 0:
      x = x * factors[0]
    elif op == 1:
      x = (x - gray.mean()) * factors[1] + gray.mean()
    elif op == 2:
      x = (x - gray[..., None]) * factors[2] + gray[..., None]
    else:
      x = _reference_hue(x, delta)
    x = np.clip(x, 0, 1)
  return x


def _reference_hue(x, delta):
  out = np.empty_like(x)
  for idx in np.ndindex(x.shape[:-1]):
    h, s, v = colorsys.rgb_to_hsv(*x[idx])
    out[idx] = colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
  return out


def test_jitter_applies_the_drawn_operations_in_the_drawn_order():
  cfg = dataclasses.replace(PRESETS["simclr"][0], jitter=1.0, grayscale=0.0, blur=0.0)
  n = 48
  x = np.random.default_rng(1).uniform(0.05, 0.95, (n, 3, 3, 3)).astype(np.float32)
  keys = keys_for(n)
  out = np.asarray(color(x, keys, cfg=cfg))
  params = jitter_params(keys, cfg)
  factors, delta, order = map(np.asarray, params)
  assert len({tuple(r) for r in order}) > 10
  for i in range(n):
    expected = _reference_jitter(x[i], factors[i], delta[i], order[i])
    np.testing.assert_allclose(out[i], expected, atol=2e-5, err_msg=f"example {i}")


def test_hue_shift_matches_colorsys():
  x = np.random.default_rng(2).uniform(0, 1, (7, 9, 3)).astype(np.float32)
  for delta in (0.1, -0.37, 0.5):
    np.testing.assert_allclose(np.asarray(hue(x, delta)), _reference_hue(x, delta),
                               atol=1e-5)


# ------------------------------------------------------------------------ other ops ----
def test_grayscale_probability_and_luma():
  cfg = dataclasses.replace(OFF, grayscale=0.2)
  n = 2000
  image = rand_images(1, 2, 2, seed=3)
  x = np.repeat(image, n, axis=0)
  out = np.asarray(color(x, keys_for(n), cfg=cfg))
  gray = (out == out[..., :1]).all(axis=(1, 2, 3))
  assert binomial_ok(gray.sum(), n, 0.2)
  luma = u8(image[0]) @ LUMA
  np.testing.assert_allclose(out[gray], np.broadcast_to(luma[..., None], out[gray].shape),
                             atol=1e-6)
  np.testing.assert_array_equal(out[~gray], u8(x[~gray]))


def _numpy_blur(image, sigma, radius):
  taps = np.arange(-radius, radius + 1)
  k = np.exp(-0.5 * (taps / sigma) ** 2)
  k /= k.sum()
  h, w, _ = image.shape
  padded = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)))
  rows = sum(k[t] * padded[:, t:t + w] for t in range(2 * radius + 1))
  return sum(k[t] * rows[t:t + h] for t in range(2 * radius + 1))


def test_blur_sigma_range_scales_with_size_and_kernel_radius():
  # 56 px = 224 / 4: blur_sigma (4, 8) at 224 is sigma in [1, 2] px; radius round(5.6)//2 = 3.
  size, n = 56, 500
  cfg = dataclasses.replace(OFF, blur=1.0, blur_sigma=(4.0, 8.0))
  assert da.blur_radius(size) == 3 and da.blur_radius(224) == 11 and da.blur_radius(32) == 1
  impulse = np.zeros((n, size, size, 3), np.float32)
  impulse[:, 28, 28] = 1.0
  out = np.asarray(color(impulse, keys_for(n), cfg=cfg))[..., 0]
  assert (out[:, 28, 28 + 3] > 0).all() and (out[:, 28, 28 + 4] == 0).all()
  sigma = np.sqrt(1 / (2 * np.log(out[:, 28, 28] / out[:, 28, 29])))
  assert sigma.min() >= 1 - 1e-4 and sigma.max() <= 2 + 1e-4
  assert sigma.min() < 1.05 and sigma.max() > 1.95
  # The blur itself against numpy at the extreme sigmas.
  x = np.random.default_rng(4).uniform(0, 1, (size, size, 3)).astype(np.float32)
  for s in (1.0, 2.0):
    np.testing.assert_allclose(np.asarray(blur(x, s, 3)), _numpy_blur(x, s, 3),
                               atol=1e-6)


def test_blur_and_solarize_probabilities():
  n = 2000
  x = np.zeros((n, 4, 4, 3), np.float32)
  x[:, :, 0] = 1.0  # a step edge: blurred iff the column next to it changes
  # sigma 4-8 px at 4 px (blur_sigma is given at 224 px); radius 1.
  cfg = dataclasses.replace(OFF, blur=0.3, blur_sigma=(224.0, 448.0))
  out = np.asarray(color(x, keys_for(n), cfg=cfg))
  assert binomial_ok((out[:, 0, 1, 0] > 0).sum(), n, 0.3)
  ones = np.full((n, 1, 1, 3), 255, np.uint8)
  out = np.asarray(color(ones, keys_for(n), cfg=dataclasses.replace(OFF, solarize=0.2)))
  assert set(np.unique(out)) == {0.0, 1.0}
  assert binomial_ok((out[:, 0, 0, 0] == 0).sum(), n, 0.2)


def test_solarize_threshold():
  x = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), (1, 16, 16, 3))
  out = np.asarray(color(x, keys_for(1), cfg=dataclasses.replace(OFF, solarize=1.0)))
  f = u8(x)
  np.testing.assert_array_equal(out, np.where(f < 0.5, f, 1 - f))
  assert out[0, 7, 15, 0] == f[0, 7, 15, 0] and f[0, 7, 15, 0] < 0.5   # 127
  assert out[0, 8, 0, 0] == 1 - f[0, 8, 0, 0] and f[0, 8, 0, 0] >= 0.5  # 128 inverts


def test_operations_match_tf_data_at_fixed_parameters():
  import tensorflow as tf
  from mssl.data import augment

  levels = np.arange(256, dtype=np.uint8)  # the uint8 conversion: convert_image_dtype's
  np.testing.assert_array_equal(u8(levels), tf.image.convert_image_dtype(levels, tf.float32))
  rng = np.random.default_rng(5)
  x = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
  tx = tf.constant(x)
  for delta in (0.2, -0.13):
    np.testing.assert_allclose(np.asarray(hue(x, delta)),
                               tf.image.adjust_hue(tx, delta).numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.jit(da.grayscale)(x)),
                             tf.image.rgb_to_grayscale(tx).numpy(), atol=1e-6)
  gray_cfg = dataclasses.replace(OFF, grayscale=1.0)
  np.testing.assert_allclose(np.asarray(color(x[None], keys_for(1), cfg=gray_cfg))[0],
                             tf.tile(tf.image.rgb_to_grayscale(tx), [1, 1, 3]).numpy(),
                             atol=1e-6)
  np.testing.assert_array_equal(np.asarray(jax.jit(da.solarize)(x)),
                                augment.solarize(tx).numpy())
  # Blur at a fixed sigma: the host's sigma range collapsed to one value at 224 px.
  seed = tf.constant([1, 2], tf.int64)
  for sigma in (0.05, 0.4):
    host = augment.gaussian_blur(tx, seed, 32, (sigma * 7, sigma * 7)).numpy()
    np.testing.assert_allclose(np.asarray(blur(x, sigma, da.blur_radius(32))),
                               host, atol=1e-5)
  # The linear jitter operations against the host's formulas in TF.
  gray = tf.image.rgb_to_grayscale(tx)
  np.testing.assert_allclose(np.asarray(jax.jit(da.adjust_brightness)(x, 1.3)),
                             (tx * 1.3).numpy(),
                             atol=1e-6)
  mean = tf.reduce_mean(gray)
  np.testing.assert_allclose(np.asarray(jax.jit(da.adjust_contrast)(x, 0.7)),
                             ((tx - mean) * 0.7 + mean).numpy(), atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.jit(da.adjust_saturation)(x, 1.6)),
                             ((tx - gray) * 1.6 + gray).numpy(), atol=1e-6)


# ------------------------------------------------------------------------ views --------
def test_sharded_jit_matches_unsharded(data_mesh):
  from jax.sharding import NamedSharding, PartitionSpec as P
  n = 16
  x = rand_images(n, 12, 12, seed=6)

  def run(views, step, **kw):
    return da.augment_views(views, seed=5, step=step, **kw)

  sharded = NamedSharding(data_mesh, P("data"))
  # Colour: every operation. Crop on the device: rotation, crop, flip (colour as above).
  rotated = dataclasses.replace(OFF, rotation=20.0)
  for kw in ({"configs": PRESETS["byol"][1:]},  # jitter, grayscale, blur, solarize
             {"configs": (rotated, OFF), "crop_on_device": True,
              "image_size": 10, "small_size": 6, "num_large": 1}):
    inputs = (x, x)[:len(kw["configs"])]
    fn = jax.jit(lambda v, s, kw=kw: run(v, s, **kw))
    single = fn(jax.device_put(inputs, jax.devices()[0]), jnp.int32(3))
    split = fn(jax.device_put(inputs, sharded), jnp.int32(3))
    for a, b in zip(single, split):
      assert len(b.sharding.device_set) == 8 and b.dtype == jnp.float32
      assert 0 <= float(b.min()) and float(b.max()) <= 1
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    if kw.get("crop_on_device"):  # a large view (rotated) and a small crop
      assert [o.shape for o in split] == [(n, 10, 10, 3), (n, 6, 6, 3)]
    # The step is a traced argument: another step, other draws, no recompilation.
    other = fn(jax.device_put(inputs, sharded), jnp.int32(4))
    assert not np.array_equal(np.asarray(other[0]), np.asarray(split[0]))


def test_augment_views_key_convention_and_argument_checks():
  x = rand_images(8, 6, 6, seed=8)
  cfg = (dataclasses.replace(OFF, solarize=0.5),) * 2

  @jax.jit
  def views_and_reference(x):
    out = da.augment_views((x, x), seed=1, step=2, configs=cfg)
    # View v is color_augment with the colour column (3) of view_keys(seed, step, v) split
    # into one key per stage.
    split = lambda v: jax.vmap(lambda k: jax.random.split(k, 4)[3])(da.view_keys(1, 2, v, 8))
    return out, tuple(da.color_augment(x, split(v), cfg[v]) for v in range(2))

  out, reference = views_and_reference(x)
  for v in range(2):
    np.testing.assert_array_equal(np.asarray(out[v]), np.asarray(reference[v]))
  assert not np.array_equal(np.asarray(out[0]), np.asarray(out[1]))
  with pytest.raises(ValueError, match="one ViewConfig per view"):
    da.augment_views((x, x), seed=0, step=0, configs=cfg[:1])
  with pytest.raises(ValueError, match="image_size"):
    da.augment_views((x,), seed=0, step=0, configs=cfg[:1], crop_on_device=True)


# ------------------------------------------------------------------------ geometry -----
def test_crop_boxes_area_aspect_and_position():
  n, side = 4000, 1000  # a large image: rounding of the box sides is negligible
  sample = jax.jit(da.sample_crop_boxes, static_argnums=(1, 2, 3, 4))
  boxes = np.asarray(sample(keys_for(n), side, side, (0.08, 0.5), (3 / 4, 4 / 3)))
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= side).all() and (left + w <= side).all()
  area, log_aspect = h * w / side**2, np.log(w / h)
  # Every candidate fits, so nothing is rejected: area ~ U(0.08, 0.5), log aspect ~ U.
  assert area.min() >= 0.08 * 0.995 and area.max() <= 0.5 * 1.005
  np.testing.assert_allclose(np.quantile(area, [0.25, 0.5, 0.75]),
                             [0.185, 0.29, 0.395], atol=0.015)
  lo, hi = np.log(3 / 4), np.log(4 / 3)
  assert log_aspect.min() >= lo - 2e-3 and log_aspect.max() <= hi + 2e-3
  np.testing.assert_allclose(np.quantile(log_aspect, [0.25, 0.5, 0.75]),
                             lo + (hi - lo) * np.array([0.25, 0.5, 0.75]), atol=0.015)
  assert abs(np.mean(top / np.maximum(side - h, 1)) - 0.5) < 0.02  # uniform position
  # A non-square image and the full range of areas (rounding matters at 48 x 64 px).
  boxes = np.asarray(sample(keys_for(n), 48, 64, (0.08, 1.0), (3 / 4, 4 / 3)))
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (top + h <= 48).all() and (left + w <= 64).all()
  area = h * w / (48 * 64)
  assert area.min() > 0.08 * 0.85 and area.max() <= 1.0 and area.max() > 0.95
  assert (w / h).min() > 0.75 * 0.9 and (w / h).max() < 4 / 3 * 1.1
  # Areas of 90-100%: most candidates do not fit, ~(1 - 0.18)^10 of draws fall back to the
  # whole image, and every other box respects the aspect range.
  boxes = np.asarray(sample(keys_for(n), 100, 100, (0.9, 1.0), (3 / 4, 4 / 3)))
  top, left, h, w = boxes.T
  whole = (h == 100) & (w == 100)
  assert 0.03 < whole.mean() < 0.4
  ratio = w[~whole] / h[~whole]
  assert ratio.min() >= 0.75 * 0.98 and ratio.max() <= 4 / 3 * 1.02
  assert (h * w)[~whole].min() >= 0.9 * 1e4 * 0.98
  # No candidate can fit: always the whole image.
  boxes = np.asarray(sample(keys_for(50), 32, 32, (1.0, 1.0), (2.0, 3.0)))
  np.testing.assert_array_equal(boxes, np.tile([0, 0, 32, 32], (50, 1)))


def test_random_resized_crop_resamples_the_box():
  x = rand_images(1, 32, 48, seed=9)
  f = u8(x)
  # Scale 1: the box itself, exactly (cubic weights vanish at integer offsets).
  crop = jax.jit(da.crop_and_resize, static_argnums=2)(f[0], jnp.array([8, 16, 16, 16]), 16)
  np.testing.assert_allclose(np.asarray(crop), f[0, 8:24, 16:32], atol=1e-6)
  square = rand_images(3, 20, 20, seed=10)
  out = jax.jit(da.random_resized_crop, static_argnums=(2, 3, 4))(
      square, keys_for(3), 20, (1.0, 1.0), (1.0, 1.0))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out), u8(square), atol=1e-6)


def test_random_flip_probability():
  n = 2000
  x = np.repeat(rand_images(1, 3, 4, seed=11).astype(np.float32), n, axis=0)
  out = np.asarray(jax.jit(da.random_flip, static_argnums=2)(x, keys_for(n), 0.5))
  flipped = (out == x[:, :, ::-1]).all(axis=(1, 2, 3))
  assert ((out == x).all(axis=(1, 2, 3)) | flipped).all()
  assert binomial_ok(flipped.sum(), n, 0.5)
  assert da.random_flip(x, keys_for(n), 0.0) is x


def test_rotate():
  x = np.random.default_rng(12).uniform(0, 1, (2, 9, 9, 3)).astype(np.float32)
  rotate = jax.jit(da.rotate)
  np.testing.assert_array_equal(np.asarray(rotate(x, jnp.zeros(2))), x)
  quarter = np.asarray(rotate(x, jnp.full(2, np.pi / 2)))
  np.testing.assert_allclose(quarter, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)


# ------------------------------------------------------------------------ packaging ----
def test_imports_and_runs_without_tensorflow():
  code = """
import sys

class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
      raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
import numpy as np
import mssl.data.device_augment as da
from mssl.data.views import ViewConfig
x = np.zeros((2, 8, 8, 3), np.uint8)
out = da.augment_views((x,), seed=0, step=0, configs=(ViewConfig(jitter=0, solarize=0.5),))
assert out[0].shape == (2, 8, 8, 3), out[0].shape
assert not [m for m in sys.modules if m.startswith("tensorflow")]
print("ok")
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_throughput_reports_views_per_second():
  assert da.throughput(batch=2, size=8, preset="none", repeats=1) > 0
