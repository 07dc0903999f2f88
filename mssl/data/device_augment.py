"""Device-side view augmentation in JAX: the per-pixel colour work of a view, inside the step.

The host pipeline (:mod:`mssl.data.pipeline`) decodes, crops, resizes and flips and emits
``uint8`` views; everything that touches every pixel's colour runs here, on the accelerator,
inside the jitted train step (issue 16). The operations, their parameter ranges,
probabilities and order are those of the tf.data implementation (:mod:`mssl.data.augment`)
and of the presets in :mod:`mssl.data.views`:

1. colour jitter with probability ``jitter``: brightness (multiplicative factor uniform in
   ``[1-b, 1+b]``), contrast (blend with the image's grayscale mean, factor in
   ``[1-c, 1+c]``), saturation (blend with the pixel's grayscale, factor in ``[1-s, 1+s]``)
   and hue (shift uniform in ``[-h, h]`` of a full turn), in a random order per example,
   each followed by a clip to [0, 1];
2. grayscale with probability ``grayscale`` (the luma tiled to 3 channels);
3. Gaussian blur with probability ``blur``: separable kernel of radius
   ``max(1, round(0.1 size) // 2)``, sigma uniform in ``blur_sigma * size / 224``, zero
   padding ("SAME"), as ``tf.nn.depthwise_conv2d`` in the host version;
4. solarize with probability ``solarize`` (``x < 0.5 ? x : 1 - x``);
5. a final clip to [0, 1].

An operation whose probability is 0 is left out at trace time, so a preset that needs
nothing (``none``, ``mae``) costs the ``uint8 -> float32`` conversion only (:func:`to_float`:
``x * float32(1 / 255)``, bit-identical to ``tf.image.convert_image_dtype``).

**Randomness.** Every example of every view has its own key (:func:`view_keys`):
``key(seed)`` folded with the step, the view index and the example's row in the *global*
batch, so a result does not depend on how the batch is sharded. The key is split into one
key per stage (rotation, crop, flip, colour) and the colour key into one per operation,
at fixed positions: the draws of one operation do not change when another is switched on
or off, or when the crop moves onto the device. An example's colour numbers come from one
split and one vectorised draw (:func:`color_draws`), its crop's from one draw: each
threefry call is a sizeable piece of XLA program to compile, so there are a few per view
rather than one per number.

**dm-pix** (0.4.5, works with jax 0.10). ``pix.adjust_hue`` (TensorFlow's hue rotation in
HSV; equal to ``tf.image.adjust_hue`` for inputs in [0, 1]), ``pix.rgb_to_grayscale``
(Rec.601 weights ``0.2989, 0.5870, 0.1140``, TensorFlow's), ``pix.solarize``
(``where(x < t, x, 1 - x)``) and ``pix.flip_left_right`` are used as they are. The rest is
written here because dm-pix's conventions differ from the presets':
``pix.adjust_brightness`` is additive (ours multiplies), ``pix.adjust_contrast`` blends with
per-channel means (ours with the grayscale mean) and ``pix.adjust_saturation`` scales the
HSV saturation (ours blends with the grayscale image, torchvision-style).
``pix.gaussian_blur`` has the same kernel and padding but takes one scalar sigma: under
``vmap`` with a per-example sigma XLA turns it into a grouped convolution with ``B * 3``
groups after moving the batch into the feature axis, which measured ten times slower on
CPU than the shifted-sum form used here (a separable blur as ``sum_t k_t shift(x, t)``:
element-wise, fused into one loop per direction on any backend, float32 arithmetic with no
TF32 convolution). Grayscale runs under ``default_matmul_precision("highest")``: it is a
``dot_general``, which TPUs and recent GPUs otherwise run in bfloat16 / TF32.

For datasets that live on the device (``augment_views(..., crop_on_device=True)``), the
geometric part also runs here: an optional random rotation (reflected borders, as the host
pipeline), an Inception-style random resized crop (:func:`random_resized_crop`) and a
random horizontal flip. They follow the host's conventions, with two differences: the
crop draws its area uniformly and its aspect log-uniformly (the host's TF sampler draws
the aspect uniformly, then the height), and the rotation's reflection acts on the
neighbour indices of the bilinear interpolation (TF reflects the sampling coordinate),
which differs within half a pixel of the border only.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Optional, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from mssl.data import views as views_lib
from mssl.data.views import SMALL_CROP_SCALE, ViewConfig

Array = jax.Array

# A view's per-example key splits into STAGES keys (rotation, crop, flip, colour); the
# colour key into COLOR_STREAMS keys, one per operation, each giving 4 uniforms. Fixed
# positions, so adding or removing a stage or an operation never shifts another's stream.
_ROTATE, _CROP, _FLIP, _COLOR = 0, 1, 2, 3
STAGES = 4
_JITTER, _ORDER, _BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3, 4, 5
_GRAYSCALE, _BLUR, _BLUR_SIGMA, _SOLARIZE = 6, 7, 8, 9
COLOR_STREAMS = 10

# The four jitter operations, in the order of their ids in the random permutation.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
CROP_ATTEMPTS = 10  # as tf.image.sample_distorted_bounding_box(max_attempts=10)


# --------------------------------------------------------------------------------------
# Keys.
# --------------------------------------------------------------------------------------
def view_keys(seed: int, step, view: int, batch_size: int) -> Array:
  """``(batch_size,)`` typed keys of one view: ``key(seed)`` folded with ``step`` (a Python
  int or a traced integer scalar), then ``view``, then each example's row ``0..B-1`` of
  the global batch."""
  key = jax.random.fold_in(jax.random.key(seed), step)
  key = jax.random.fold_in(key, view)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(batch_size))


def stage_keys(keys: Array) -> Array:
  """``(B, STAGES)`` keys: each view key split into its rotation, crop, flip and colour
  keys (columns 0-3)."""
  return jax.vmap(lambda k: jax.random.split(k, STAGES))(keys)


def _uniform(key, minval=0.0, maxval=1.0, shape=()):
  return jax.random.uniform(key, shape, jnp.float32, minval, maxval)


def _scale(u, minval, maxval):
  """A uniform in [0, 1) moved to [minval, maxval)."""
  return minval + (maxval - minval) * u


def color_draws(key) -> Array:
  """``(COLOR_STREAMS, 4)`` uniforms in [0, 1) of one example's colour key: row ``op`` is
  the stream of operation ``op`` (its own key from one split of ``key``), drawn in one
  vectorised call."""
  return jax.vmap(lambda k: _uniform(k, shape=(4,)))(jax.random.split(key, COLOR_STREAMS))


# --------------------------------------------------------------------------------------
# Colour operations on one float32 (H, W, 3) image in [0, 1].
# --------------------------------------------------------------------------------------
def to_float(images) -> Array:
  """float32 images: uint8 times ``float32(1 / 255)``, other dtypes cast.

  A multiplication, not a division: XLA's CPU compiler rewrites ``x / 255`` into this
  product, other backends need not, so writing the product makes the result the same
  everywhere. It is bit-identical to ``tf.image.convert_image_dtype`` (the conversion
  of the host pipeline before issue 16); it differs from the correctly rounded ``x / 255``
  by one ulp for about half of the 256 values.
  """
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) * np.float32(1 / 255)
  return images.astype(jnp.float32)


def grayscale(image: Array) -> Array:
  """Rec.601 luma (TensorFlow's weights), shape ``(..., 1)``."""
  with jax.default_matmul_precision("highest"):
    return pix.rgb_to_grayscale(image)


def _blend(image, reference, factor):
  """``(x - r) f + r``: the form of all three linear jitter operations."""
  return (image - reference) * factor + reference


def adjust_brightness(image: Array, factor) -> Array:
  """Multiplicative brightness ``x f`` (not dm-pix's additive one)."""
  return image * factor


def adjust_contrast(image: Array, factor) -> Array:
  """Contrast around the grayscale mean of the image (not per-channel means)."""
  return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image: Array, factor) -> Array:
  """Saturation as a blend with the grayscale image (not an HSV saturation scale)."""
  return _blend(image, grayscale(image), factor)


def adjust_hue(image: Array, delta) -> Array:
  """Hue rotated by ``delta`` of a full turn (``tf.image.adjust_hue``)."""
  return pix.adjust_hue(image, delta)


def blur_radius(size: int) -> int:
  """The kernel radius of the host pipeline: 10% of the side, at least 1."""
  return max(1, int(round(0.1 * size)) // 2)


def gaussian_blur(image: Array, sigma, radius: int) -> Array:
  """Separable Gaussian blur of one ``(H, W, C)`` image, ``2 radius + 1`` taps, zero padding.

  Each direction is ``sum_t k_t x[. + t]`` over shifted slices of the padded image: a
  per-example sigma stays element-wise under ``vmap`` (no grouped convolution).
  """
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * jnp.square(taps / jnp.maximum(sigma, 1e-3)))
  kernel = kernel / jnp.sum(kernel)

  def along(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad)
    n = x.shape[axis]
    out = kernel[0] * jax.lax.slice_in_dim(padded, 0, n, axis=axis)
    for t in range(1, 2 * radius + 1):
      out = out + kernel[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis)
    return out

  return along(along(image, 1), 0)


def solarize(image: Array) -> Array:
  return pix.solarize(image, 0.5)


def _jitter_strengths(cfg: ViewConfig):
  return (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)


def jitter_params(key, cfg: ViewConfig):
  """One example's jitter draws from its colour key: ``(factors, delta, order)``.

  ``factors``: brightness, contrast, saturation factors, each uniform in ``[1-s, 1+s]``;
  ``delta``: the hue shift, uniform in ``[-hue, hue]``; ``order``: the operations with a
  non-zero strength (ids into :data:`JITTER_OPS`), in a uniformly random order. An
  operation of strength 0 is the identity and is left out of the order.
  """
  return _jitter_params(color_draws(key), cfg)


def _jitter_params(u, cfg: ViewConfig):
  factors = jnp.stack([_scale(u[op, 0], 1 - s, 1 + s) for op, s in
                       ((_BRIGHTNESS, cfg.brightness), (_CONTRAST, cfg.contrast),
                        (_SATURATION, cfg.saturation))])
  delta = _scale(u[_HUE, 0], -cfg.hue, cfg.hue)
  enabled = [i for i, s in enumerate(_jitter_strengths(cfg)) if s > 0]
  perm = jnp.argsort(u[_ORDER, :len(enabled)])
  order = jnp.asarray(enabled, jnp.int32)[perm]
  return factors, delta, order


def color_jitter(image: Array, key, cfg: ViewConfig) -> Array:
  """torchvision-style jitter of one image: the enabled operations in the drawn order, each
  clipped to [0, 1].

  Brightness, contrast and saturation are all ``(x - r) f + r`` with ``r`` = 0, the
  grayscale mean or the grayscale pixel, so each position of the order evaluates that
  blend once (with the reference and factor of whichever operation sits there) and the
  hue rotation once, then selects: 2 evaluations per position instead of 4 under ``vmap``.
  """
  return _color_jitter(image, color_draws(key), cfg)


def _color_jitter(image, u, cfg: ViewConfig):
  factors, delta, order = _jitter_params(u, cfg)
  linear = any(s > 0 for s in _jitter_strengths(cfg)[:3])
  needs_gray = cfg.contrast > 0 or cfg.saturation > 0

  def step(position, image):
    op = order[position]
    out = None
    if linear:
      reference = jnp.zeros((), image.dtype)
      if needs_gray:
        gray = grayscale(image)
        if cfg.contrast > 0:
          reference = jnp.where(op == 1, jnp.mean(gray), reference)
        if cfg.saturation > 0:
          reference = jnp.where(op == 2, gray, reference)
      factor = factors[jnp.minimum(op, 2)]
      out = jnp.clip(_blend(image, reference, factor), 0.0, 1.0)
    if cfg.hue > 0:
      hue = jnp.clip(adjust_hue(image, delta), 0.0, 1.0)
      out = hue if out is None else jnp.where(op == 3, hue, out)
    return out

  # Unrolled: a fori_loop compiles a quarter of the program but ran 2.5x slower on CPU
  # (no fusion across iterations of a while loop).
  for position in range(order.shape[0]):
    image = step(position, image)
  return image


def needs_device_work(cfg: ViewConfig) -> bool:
  """Whether a view config has a colour operation with a probability above 0."""
  return any(p > 0 for p in (cfg.jitter, cfg.grayscale, cfg.blur, cfg.solarize))


def _maybe(u, prob: float, fn, image):
  """``fn(image)`` if the uniform ``u`` is below ``prob`` (a static float > 0)."""
  if prob >= 1:
    return fn(image)
  return jnp.where(u < prob, fn(image), image)


def _color_one(image, key, cfg: ViewConfig):
  size = image.shape[0]
  u = color_draws(key)
  if cfg.jitter > 0 and any(s > 0 for s in _jitter_strengths(cfg)):
    image = _maybe(u[_JITTER, 0], cfg.jitter, lambda x: _color_jitter(x, u, cfg), image)
  if cfg.grayscale > 0:
    image = _maybe(u[_GRAYSCALE, 0], cfg.grayscale,
                   lambda x: jnp.broadcast_to(grayscale(x), x.shape), image)
  if cfg.blur > 0:
    scale = size / 224.0
    sigma = _scale(u[_BLUR_SIGMA, 0], cfg.blur_sigma[0] * scale, cfg.blur_sigma[1] * scale)
    image = _maybe(u[_BLUR, 0], cfg.blur,
                   lambda x: gaussian_blur(x, sigma, blur_radius(size)), image)
  if cfg.solarize > 0:
    image = _maybe(u[_SOLARIZE, 0], cfg.solarize, solarize, image)
  return jnp.clip(image, 0.0, 1.0)


def color_augment(images, keys: Array, cfg: ViewConfig) -> Array:
  """The colour augmentation of a batch: ``(B, H, W, 3)`` uint8 (or float in [0, 1]) to
  float32 in [0, 1], one key per example (jitter, grayscale, blur, solarize, clip).

  The blur's sigma range is scaled by ``H / 224``. Operations of probability 0 are not
  traced; with none left the result is :func:`to_float` of the input (clipped if float).
  """
  was_uint8 = jnp.asarray(images).dtype == jnp.uint8
  x = to_float(images)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"images must be (B, H, W, 3); got shape {x.shape}.")
  if not needs_device_work(cfg):
    return x if was_uint8 else jnp.clip(x, 0.0, 1.0)
  return jax.vmap(functools.partial(_color_one, cfg=cfg))(x, keys)


# --------------------------------------------------------------------------------------
# Geometry, for datasets that live on the device.
# --------------------------------------------------------------------------------------
def _sample_box(key, height: int, width: int, scale, ratio, attempts: int):
  u = _uniform(key, shape=(2 * attempts + 2,))  # one draw: areas, aspects, position
  area = height * width * _scale(u[:attempts], scale[0], scale[1])
  aspect = jnp.exp(_scale(u[attempts:2 * attempts], math.log(ratio[0]), math.log(ratio[1])))
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(ok)
  found = jnp.any(ok)
  h = jnp.where(found, h[first], height)
  w = jnp.where(found, w[first], width)
  top = jnp.minimum(jnp.floor(u[-2] * (height - h + 1)).astype(jnp.int32), height - h)
  left = jnp.minimum(jnp.floor(u[-1] * (width - w + 1)).astype(jnp.int32), width - w)
  return jnp.stack([top, left, h, w])


def sample_crop_boxes(keys: Array, height: int, width: int, scale, ratio,
                      attempts: int = CROP_ATTEMPTS) -> Array:
  """``(B, 4)`` int32 crop boxes ``(top, left, height, width)``, one per key.

  Inception / torchvision style: up to ``attempts`` candidates with an area fraction
  uniform in ``scale`` and an aspect ratio (width / height) log-uniform in ``ratio``; the
  first that fits the image is taken, the whole image if none does (the fallback of
  ``tf.image.sample_distorted_bounding_box(use_image_if_no_bounding_boxes=True)``). The
  position is uniform over the places the box fits. (The host's TF sampler draws the
  aspect uniformly and then the height; the area and aspect ranges are the same.)
  """
  return jax.vmap(lambda k: _sample_box(k, height, width, scale, ratio, attempts))(keys)


def crop_and_resize(image: Array, box: Array, size: int, method: str = "cubic") -> Array:
  """One ``(H, W, C)`` image's box ``(top, left, h, w)`` resampled to ``(size, size)``
  (antialiased when shrinking), clipped to [0, 1]. Pixels next to the box come from the
  image itself, so there is no border effect at the crop's edges."""
  top, left, h, w = (box[i].astype(jnp.float32) for i in range(4))
  scale = jnp.stack([size / h, size / w])
  translation = -jnp.stack([top, left]) * scale
  out = jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), scale,
                                      translation, method=method, antialias=True)
  return jnp.clip(out, 0.0, 1.0)


def random_resized_crop(images, keys: Array, size: int, scale, ratio,
                        method: str = "cubic") -> Array:
  """Per-example Inception-style crop (:func:`sample_crop_boxes`) resized to
  ``(size, size)`` with ``jax.image.scale_and_translate`` (bicubic like the host pipeline,
  antialiased); float32 in [0, 1]."""
  x = to_float(images)
  boxes = sample_crop_boxes(keys, x.shape[1], x.shape[2], scale, ratio)
  return jax.vmap(lambda im, b: crop_and_resize(im, b, size, method))(x, boxes)


def random_flip(images, keys: Array, prob: float) -> Array:
  """Each image mirrored left-right with probability ``prob`` (static)."""
  if prob <= 0:
    return images
  flip = jax.vmap(lambda k: _uniform(k) < prob)(keys)
  return jnp.where(flip[:, None, None, None], pix.flip_left_right(images), images)


def rotate(images: Array, angles: Array) -> Array:
  """``(B, H, W, C)`` float images rotated counter-clockwise by ``angles`` radians about
  their centres, bilinear, borders filled by reflection (the host's ``rotate``)."""
  _, height, width, _ = images.shape
  cy, cx = (height - 1) / 2, (width - 1) / 2
  y, x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                      jnp.arange(width, dtype=jnp.float32), indexing="ij")

  def one(image, angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    # Output pixel (x, y) samples the input at R(-angle) (x - centre) + centre.
    src_x = c * (x - cx) - s * (y - cy) + cx
    src_y = s * (x - cx) + c * (y - cy) + cy
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [src_y, src_x], order=1,
                                                           mode="reflect")
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

  return jax.vmap(one)(images, angles)


def random_rotation(images, keys: Array, max_degrees: float) -> Array:
  """Rotation by an angle uniform in ``[-max_degrees, max_degrees]`` per example."""
  angles = jax.vmap(lambda k: _uniform(k, -max_degrees, max_degrees))(keys)
  return rotate(to_float(images), angles * (math.pi / 180))


# --------------------------------------------------------------------------------------
# Views.
# --------------------------------------------------------------------------------------
def augment_views(views, *, seed: int, step, configs: Sequence[ViewConfig],
                  crop_on_device: bool = False, image_size: Optional[int] = None,
                  small_size: Optional[int] = None, num_large: Optional[int] = None) -> tuple:
  """The device-side augmentation of all views of a batch.

  ``views``: ``(B, S, S, 3)`` uint8 arrays, the large views then the small crops, as the
  host pipeline emits them; ``configs``: the :class:`ViewConfig` of each view (same
  length). View ``v`` draws from ``view_keys(seed, step, v, B)``; its stages use
  the columns of :func:`stage_keys` (rotation 0, crop 1, flip 2, colour 3). Returns float32 views
  in [0, 1].

  ``crop_on_device=True``: every entry of ``views`` is the same full-size batch, and each
  view is rotated (if its config says so), cropped (``crop_scale``; the small crops, views
  ``num_large`` and beyond, use ``SMALL_CROP_SCALE``), resized to ``image_size`` (small
  crops: ``small_size``) and flipped here before its colour augmentation.
  """
  views, configs = tuple(views), tuple(configs)
  if len(configs) != len(views):
    raise ValueError(f"need one ViewConfig per view: {len(views)} views, "
                     f"{len(configs)} configs.")
  num_large = len(views) if num_large is None else num_large
  if crop_on_device:
    if image_size is None:
      raise ValueError("crop_on_device=True needs image_size.")
    if num_large < len(views) and small_size is None:
      raise ValueError("crop_on_device=True with small crops needs small_size.")
  out = []
  for v, (images, cfg) in enumerate(zip(views, configs)):
    keys = stage_keys(view_keys(seed, step, v, images.shape[0]))
    if crop_on_device:
      large = v < num_large
      x = to_float(images)
      if cfg.rotation > 0:
        x = random_rotation(x, keys[:, _ROTATE], cfg.rotation)
      x = random_resized_crop(x, keys[:, _CROP], image_size if large else small_size,
                              cfg.crop_scale if large else SMALL_CROP_SCALE, cfg.crop_ratio)
      images = random_flip(x, keys[:, _FLIP], cfg.flip)
    out.append(color_augment(images, keys[:, _COLOR], cfg))
  return tuple(out)


def throughput(batch: int = 256, size: int = 224, preset: str = "mocov3", repeats: int = 5,
               num_views: int = 2) -> float:
  """Views per second of the jitted :func:`augment_views` (colour only, preset cycled over
  ``num_views`` views of random uint8 images) on the default backend; compilation and a
  warm-up call are not timed."""
  presets = views_lib.preset(preset)
  configs = tuple(presets[v % len(presets)] for v in range(num_views))
  rng = np.random.default_rng(0)
  views = tuple(jax.device_put(rng.integers(0, 256, (batch, size, size, 3), np.uint8))
                for _ in range(num_views))
  fn = jax.jit(lambda views, step: augment_views(views, seed=0, step=step, configs=configs))
  jax.block_until_ready(fn(views, jnp.int32(0)))
  start = time.perf_counter()
  for i in range(repeats):
    jax.block_until_ready(fn(views, jnp.int32(i + 1)))
  return repeats * batch * num_views / (time.perf_counter() - start)
