"""SSL augmentations in tf.data with explicit (stateless) random seeds.

Every random choice is drawn from a seed derived from ``(seed, process, example index,
view, operation)``, so a pipeline is reproducible, the two views of an example differ, and a
resumed pipeline redraws exactly what the uninterrupted one would have (see
``pipeline.py``). Views and presets are defined in :mod:`mssl.data.views`.

Two ways to make the views of an example:

* :func:`multi_view`: everything on the host, float32 in [0, 1] throughout: crop, resize,
  flip, colour jitter, grayscale, blur, solarize.
* :func:`multi_view_uint8`: the host's share when the colour operations run on the
  accelerator (:mod:`mssl.data.device_augment`): rotation, crop, resize and flip only,
  rounded to uint8 (a quarter of the bytes to batch and copy). The crop windows and flips
  are drawn from the same seeds as :func:`multi_view`'s, so its views are
  :func:`multi_view`'s with the colour operations left out, up to rounding to 1/255. It
  also takes encoded images: a JPEG's crop windows are sampled from its header
  (``extract_jpeg_shape``) and only the box holding them is decoded
  (``decode_and_crop_jpeg``); other formats are decoded whole, then cropped.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mssl.data.views import (PRESETS, SMALL_CROP_SCALE, ViewConfig,  # noqa: F401
                              preset)


# ------------------------------------------------------------ seeds --------------------
def fold_seed(seed: tf.Tensor, data) -> tf.Tensor:
  """A new stateless seed (shape [2], int64) derived from ``seed`` and ``data``."""
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _uniform(seed, minval=0.0, maxval=1.0):
  return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval)


def _maybe(seed, prob, fn, image):
  if prob <= 0:
    return image
  if prob >= 1:
    return fn(image)
  return tf.cond(_uniform(seed) < prob, lambda: fn(image), lambda: image)


# ------------------------------------------------------------ operations ---------------
def crop_window(shape, seed, scale, ratio):
  """``(begin, size)`` of an Inception-style crop (random area fraction ``scale`` and
  aspect ratio ``ratio``) of an image of ``shape`` ``[H, W, C]``, as ``tf.slice`` takes
  them (``begin = [y, x, 0]``, ``size = [h, w, -1]``). Depends on the shape and the seed
  only, so a crop can be chosen from a JPEG's header before anything is decoded."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return begin, size


def random_resized_crop(image, seed, size: int, scale, ratio):
  """Inception-style crop of a random area fraction and aspect ratio, resized to size."""
  begin, crop_size = crop_window(tf.shape(image), seed, scale, ratio)
  crop = tf.slice(image, begin, crop_size)
  return tf.image.resize(crop, (size, size), method="bicubic", antialias=True)


def _gray(image):
  return tf.image.rgb_to_grayscale(image)


def color_jitter(image, seed, cfg: ViewConfig):
  """torchvision-style jitter: brightness, contrast, saturation, hue in random order."""
  seeds = tf.random.experimental.stateless_split(seed, 5)

  def brightness(x):
    return x * _uniform(seeds[0], 1 - cfg.brightness, 1 + cfg.brightness)

  def contrast(x):
    mean = tf.reduce_mean(_gray(x))
    return (x - mean) * _uniform(seeds[1], 1 - cfg.contrast, 1 + cfg.contrast) + mean

  def saturation(x):
    gray = _gray(x)
    return (x - gray) * _uniform(seeds[2], 1 - cfg.saturation, 1 + cfg.saturation) + gray

  def hue(x):
    return tf.image.adjust_hue(x, _uniform(seeds[3], -cfg.hue, cfg.hue))

  ops = [brightness, contrast, saturation, hue]
  order = tf.argsort(tf.random.stateless_uniform([4], seeds[4]))
  for i in range(4):
    branches = [lambda f=f: tf.clip_by_value(f(image), 0.0, 1.0) for f in ops]
    image = tf.switch_case(order[i], branches)
    image.set_shape([None, None, 3])
  return image


def gaussian_blur(image, seed, size: int, sigma_range):
  """Separable Gaussian blur, kernel 10% of the image side, sigma scaled from 224 px."""
  scale = size / 224.0
  sigma = _uniform(seed, sigma_range[0] * scale, sigma_range[1] * scale)
  radius = max(1, int(round(0.1 * size)) // 2)
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  kernel = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma, 1e-3)))
  kernel /= tf.reduce_sum(kernel)
  horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
  vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
  out = tf.nn.depthwise_conv2d(image[None], horizontal, [1, 1, 1, 1], "SAME")
  out = tf.nn.depthwise_conv2d(out, vertical, [1, 1, 1, 1], "SAME")
  return out[0]


def solarize(image):
  return tf.where(image < 0.5, image, 1.0 - image)


def random_rotation(image, seed, max_degrees: float):
  """Rotation by a uniform angle in [-max, max] degrees about the centre; the corners
  are filled by reflection (no black wedges for a network to notice)."""
  return rotate(image, _uniform(seed, -max_degrees, max_degrees) * (3.141592653589793 / 180))


def rotate(image, angle):
  """``image`` rotated counter-clockwise by ``angle`` radians, reflected at the borders."""
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  cy, cx = (h - 1) / 2, (w - 1) / 2
  c, s = tf.cos(angle), tf.sin(angle)
  # Output pixel (x, y) samples the input at R(-angle) (x - centre) + centre.
  transform = tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform[None], output_shape=shape[:2],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
  return out[0]


def augment_view(image, seed, cfg: ViewConfig, size: int, scale=None):
  """One augmented view of a float [0, 1] image."""
  if cfg.rotation > 0:  # its own seed stream: the other draws stay as they were
    image = random_rotation(image, fold_seed(seed, 1_000), cfg.rotation)
  seeds = tf.random.experimental.stateless_split(seed, 7)
  image = random_resized_crop(image, seeds[0], size, scale or cfg.crop_scale,
                              cfg.crop_ratio)
  if cfg.flip > 0:
    image = _maybe(seeds[1], cfg.flip, tf.image.flip_left_right, image)
  if cfg.jitter > 0:
    image = _maybe(seeds[2], cfg.jitter, lambda x: color_jitter(x, seeds[3], cfg), image)
  if cfg.grayscale > 0:
    image = _maybe(seeds[4], cfg.grayscale, lambda x: tf.tile(_gray(x), [1, 1, 3]), image)
  if cfg.blur > 0:
    image = _maybe(seeds[5], cfg.blur,
                   lambda x: gaussian_blur(x, fold_seed(seeds[5], 1), size, cfg.blur_sigma),
                   image)
  if cfg.solarize > 0:
    image = _maybe(seeds[6], cfg.solarize, solarize, image)
  image = tf.clip_by_value(image, 0.0, 1.0)
  image.set_shape([size, size, 3])
  return image


def multi_view(image, seed, views: Sequence[ViewConfig], num_views: int, size: int,
               num_small_crops: int = 0, small_size: int = 96):
  """``num_views`` large views (presets cycled) plus optional small crops."""
  image = tf.image.convert_image_dtype(image, tf.float32)
  out = []
  for v in range(num_views):
    out.append(augment_view(image, fold_seed(seed, v), views[v % len(views)], size))
  for s in range(num_small_crops):
    out.append(augment_view(image, fold_seed(seed, num_views + s), views[s % len(views)],
                            small_size, scale=SMALL_CROP_SCALE))
  return tuple(out)


# ------------------------------------------------------------ uint8 views --------------
JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg(contents) -> tf.Tensor:
  """Whether encoded image bytes (a scalar tf.string) are a JPEG, by their first bytes."""
  return tf.equal(tf.strings.substr(contents, 0, 3), JPEG_MAGIC)


def decode(contents) -> tf.Tensor:
  """Encoded image bytes (PNG, JPEG, GIF, BMP) -> uint8 ``(H, W, 3)``, decoded as the
  decoded splits are (``decode_image`` with three channels)."""
  image = tf.io.decode_image(contents, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _finish_uint8(crop, seed, cfg: ViewConfig, size: int):
  """A crop (uint8, or float in the 0-255 range) resized to ``size`` as
  :func:`random_resized_crop` does (bicubic, antialiased), flipped with ``seed``, then
  rounded and saturated to uint8."""
  image = tf.image.resize(crop, (size, size), method="bicubic", antialias=True)
  if cfg.flip > 0:
    image = _maybe(seed, cfg.flip, tf.image.flip_left_right, image)
  image = tf.saturate_cast(tf.round(image), tf.uint8)
  image.set_shape([size, size, 3])
  return image


def _window(shape, seed, cfg: ViewConfig, scale=None):
  """A view's crop window in an image of ``shape`` and its flip seed, drawn from the seeds
  :func:`augment_view` uses for them."""
  seeds = tf.random.experimental.stateless_split(seed, 7)
  begin, crop_size = crop_window(shape, seeds[0], scale or cfg.crop_scale, cfg.crop_ratio)
  return begin, crop_size, seeds[1]


JPEG_DECODES = ("union", "window", "whole")


def multi_view_uint8(image, seed, views: Sequence[ViewConfig], num_views: int, size: int,
                     num_small_crops: int = 0, small_size: int = 96, *,
                     encoded: bool = False, jpeg_decode: str = "union"):
  """:func:`multi_view`'s views without their colour operations, as uint8.

  ``image``: a uint8 ``(H, W, 3)`` image, or with ``encoded=True`` its encoded bytes. A
  JPEG (recognised by its first bytes, whatever the file's name) has its views' windows
  sampled from its header, then ``jpeg_decode`` says what is decoded: ``"union"`` the
  smallest box holding every window, once (each view is sliced from it), ``"window"``
  each view's window separately, ``"whole"`` the whole image. Other formats, and a preset
  with a rotation (it needs the whole image), are decoded whole. Either way a view's window
  is the one :func:`multi_view` draws for the same seed: it depends on the image's size
  and the seed only.

  Decoding a window skips the rows below it, and the rows above it are entropy-decoded but
  not kept; the union gains most with one view or large images.
  ``benchmarks/input_pipeline.py`` times the three (``benchmarks/results/
  input_pipeline_cpu.json``, the rows by ``jpeg_decode``).
  """
  if jpeg_decode not in JPEG_DECODES:
    raise ValueError(f"jpeg_decode must be one of {JPEG_DECODES}; got {jpeg_decode!r}.")
  specs = [(fold_seed(seed, v), views[v % len(views)], size, None)
           for v in range(num_views)]
  specs += [(fold_seed(seed, num_views + s), views[s % len(views)], small_size,
             SMALL_CROP_SCALE) for s in range(num_small_crops)]

  def from_pixels(pixels):
    out = []
    for view_seed, cfg, view_size, scale in specs:
      rotated = pixels
      if cfg.rotation > 0:  # in 0-255 floats: rotation is linear, so this is the float path
        rotated = random_rotation(tf.cast(pixels, tf.float32), fold_seed(view_seed, 1_000),
                                  cfg.rotation)
      begin, crop_size, flip_seed = _window(tf.shape(rotated), view_seed, cfg, scale)
      out.append(_finish_uint8(tf.slice(rotated, begin, crop_size), flip_seed, cfg,
                               view_size))
    return tuple(out)
  if not encoded:
    return from_pixels(image)
  if jpeg_decode == "whole" or any(cfg.rotation > 0 for _, cfg, _, _ in specs):
    return from_pixels(decode(image))

  def from_jpeg():
    shape = tf.concat([tf.image.extract_jpeg_shape(image)[:2], [3]], 0)  # channels=3
    windows = [_window(shape, view_seed, cfg, scale) for view_seed, cfg, _, scale in specs]
    if jpeg_decode == "window":
      crops = [tf.image.decode_and_crop_jpeg(
          image, tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]]), channels=3)
          for begin, crop_size, _ in windows]
    else:
      top = tf.reduce_min([begin[0] for begin, _, _ in windows])
      left = tf.reduce_min([begin[1] for begin, _, _ in windows])
      bottom = tf.reduce_max([begin[0] + crop_size[0] for begin, crop_size, _ in windows])
      right = tf.reduce_max([begin[1] + crop_size[1] for begin, crop_size, _ in windows])
      region = tf.image.decode_and_crop_jpeg(
          image, tf.stack([top, left, bottom - top, right - left]), channels=3)
      crops = [tf.slice(region, begin - tf.stack([top, left, 0]), crop_size)
               for begin, crop_size, _ in windows]
    return tuple(_finish_uint8(crop, flip_seed, cfg, view_size)
                 for crop, (_, _, flip_seed), (_, cfg, view_size, _)
                 in zip(crops, windows, specs))
  return tuple(tf.cond(is_jpeg(image), from_jpeg, lambda: from_pixels(decode(image))))


def center_crop(image, size: int, crop_fraction: float = 0.875):
  """Evaluation view: resize the shorter side to ``size / crop_fraction``, centre crop."""
  image = tf.image.convert_image_dtype(image, tf.float32)
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  target = tf.cast(tf.math.ceil(size / crop_fraction), tf.float32)
  ratio = target / tf.minimum(h, w)
  new_h = tf.cast(tf.round(h * ratio), tf.int32)
  new_w = tf.cast(tf.round(w * ratio), tf.int32)
  image = tf.image.resize(image, (new_h, new_w), method="bicubic", antialias=True)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  image = tf.clip_by_value(image[top:top + size, left:left + size], 0.0, 1.0)
  image.set_shape([size, size, 3])
  return image
