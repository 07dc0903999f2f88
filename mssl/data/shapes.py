"""The embedded dataset: procedurally generated shapes, registered as a tfds builder.

``mssl_shapes`` needs no download and no network, so the quickstart and the tests run the
real tfds path on a fresh machine. It is generated deterministically from a seed, fast
(vectorised numpy, about 25k images in seconds) and designed so that *representation
learning shows*: the class is the object's shape, while everything a raw-pixel linear
classifier could latch onto varies freely:

* 10 classes: circle, triangle, square, frame (hollow square), bar, star, cross, ring,
  crescent, half-disc (chosen to stay distinguishable at 16-32 px);
* foreground colour, background (two-colour gradient in a random direction plus stripes
  of random frequency, angle and phase), object scale, position and rotation, and pixel
  noise are all drawn independently of the class; edges are anti-aliased (2x supersampled).

Configs ``mssl_shapes/32`` (default; 20,000 train / 5,000 test images of 32 x 32 x 3)
and ``mssl_shapes/64`` (64 x 64). Classes are exactly balanced in each split.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

CLASSES = ("circle", "triangle", "square", "frame", "bar", "star", "cross", "ring",
           "crescent", "half_disc")
SPLITS = {"train": (20_000, 0), "test": (5_000, 1)}  # size, seed offset
DEFAULT_SEED = 20261122
SUPERSAMPLE = 2


def _polygon(rho, phi, sides):
  """Inside a regular polygon of circumradius 1 (polar coordinates)."""
  sector = 2 * np.pi / sides
  local = np.mod(phi, sector) - sector / 2
  return rho * np.cos(local) <= np.cos(np.pi / sides)


def _inside(label: int, u, v):
  rho = np.sqrt(u * u + v * v)
  phi = np.arctan2(v, u)
  name = CLASSES[label]
  if name == "circle":
    return rho <= 0.9
  if name == "triangle":
    return _polygon(rho, phi, 3)
  if name == "square":
    return _polygon(rho, phi, 4)
  if name == "frame":  # a hollow square
    return _polygon(rho, phi, 4) & ~_polygon(rho / 0.55, phi, 4)
  if name == "bar":  # a 3:1 rectangle
    return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.32)
  if name == "star":
    t = np.mod(phi * 5 / (2 * np.pi), 1.0)
    return rho <= 0.38 + 0.62 * np.abs(2 * t - 1) ** 1.5
  if name == "cross":
    return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3)
                                                         & (np.abs(u) <= 0.95))
  if name == "ring":
    return (rho <= 0.95) & (rho >= 0.55)
  if name == "crescent":
    return (rho <= 0.95) & (np.hypot(u - 0.45, v) >= 0.75)
  if name == "half_disc":
    return (rho <= 0.95) & (v >= 0.0)
  raise ValueError(f"unknown class {label}")


def generate(num: int, *, size: int = 32, seed: int = DEFAULT_SEED, chunk: int = 2000,
             return_masks: bool = False):
  """``num`` images (uint8, (num, size, size, 3)) and labels (int64), deterministic.

  ``return_masks=True`` also returns the anti-aliased object masks (float32, (num, size,
  size)): ground truth for tests and for shape-aware reference features.
  """
  rng = np.random.default_rng(seed)
  labels = np.arange(num) % len(CLASSES)
  rng.shuffle(labels)
  images = np.empty((num, size, size, 3), np.uint8)
  masks = np.empty((num, size, size), np.float32) if return_masks else None
  fine = size * SUPERSAMPLE
  grid = (np.arange(fine) + 0.5) / SUPERSAMPLE  # pixel-centre coordinates
  ys, xs = np.meshgrid(grid, grid, indexing="ij")
  for start in range(0, num, chunk):
    stop = min(num, start + chunk)
    n = stop - start
    scale = rng.uniform(0.3, 0.46, n) * size                    # object radius (pixels)
    cx = rng.uniform(scale, size - scale)
    cy = rng.uniform(scale, size - scale)
    theta = rng.uniform(0, 2 * np.pi, n)
    bg_a, bg_b = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    grad_angle = rng.uniform(0, 2 * np.pi, n)
    stripe_freq = rng.uniform(0.1, 0.6, n)
    stripe_angle = rng.uniform(0, np.pi, n)
    stripe_phase = rng.uniform(0, 2 * np.pi, n)
    stripe_amp = rng.uniform(0.0, 0.1, n)
    noise_std = rng.uniform(0.0, 0.04, n)
    # Foreground: a random colour at least 0.35 away (L-inf) from the background mean.
    fg = rng.uniform(0, 1, (n, 3))
    bg_mean = 0.5 * (bg_a + bg_b)
    far = np.max(np.abs(fg - bg_mean), axis=1) >= 0.35
    fg = np.where(far[:, None], fg, np.where(bg_mean > 0.5, bg_mean - 0.45, bg_mean + 0.45))
    fg = np.clip(fg, 0, 1)

    for i in range(n):
      du, dv = xs - cx[i], ys - cy[i]
      c, s = np.cos(theta[i]), np.sin(theta[i])
      u = (c * du + s * dv) / scale[i]
      v = (-s * du + c * dv) / scale[i]
      mask = _inside(labels[start + i], u, v).astype(np.float32)
      mask = mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
      if masks is not None:
        masks[start + i] = mask
      sy, sx = ys[::SUPERSAMPLE, ::SUPERSAMPLE], xs[::SUPERSAMPLE, ::SUPERSAMPLE]
      g = (np.cos(grad_angle[i]) * sx + np.sin(grad_angle[i]) * sy) / size
      g = (g - g.min()) / max(g.max() - g.min(), 1e-6)
      bg = bg_a[i] * (1 - g[..., None]) + bg_b[i] * g[..., None]
      stripes = np.sin(stripe_freq[i] * (np.cos(stripe_angle[i]) * sx
                                         + np.sin(stripe_angle[i]) * sy) + stripe_phase[i])
      bg = bg + stripe_amp[i] * stripes[..., None]
      img = bg * (1 - mask[..., None]) + fg[i] * mask[..., None]
      img = img + noise_std[i] * rng.standard_normal(img.shape)
      images[start + i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
  if return_masks:
    return images, labels.astype(np.int64), masks
  return images, labels.astype(np.int64)


class MsslShapes(tfds.core.GeneratorBasedBuilder):
  """Procedurally generated shapes (see the module docstring); no download."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "10 shape classes; 20k train / 5k test.",
                   "1.1.0": "frame and bar replace pentagon and hexagon; larger objects, "
                            "milder texture and noise (learnable on a CPU budget)."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="32", description="32 x 32 RGB"),
      tfds.core.BuilderConfig(name="64", description="64 x 64 RGB"),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = int(self.builder_config.name)
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "label": tfds.features.ClassLabel(names=list(CLASSES)),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(num, offset)
            for split, (num, offset) in SPLITS.items()}

  def _generate_examples(self, num, seed_offset):
    size = int(self.builder_config.name)
    images, labels = generate(num, size=size, seed=DEFAULT_SEED + seed_offset)
    for i in range(num):
      yield i, {"image": images[i], "label": int(labels[i])}
