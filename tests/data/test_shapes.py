"""mssl.data.shapes: the embedded dataset (generator, tfds builder), on which
representation learning has to matter."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow_datasets as tfds

from mssl import data
from mssl.data import shapes


def test_embedded_generation_is_deterministic_and_balanced():
  a_img, a_lab = shapes.generate(500, seed=7)
  b_img, b_lab = shapes.generate(500, seed=7)
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_lab, b_lab)
  c_img, _ = shapes.generate(500, seed=8)
  assert not np.array_equal(a_img, c_img)
  assert np.bincount(a_lab, minlength=10).tolist() == [50] * 10


def test_embedded_tfds_builder(tfds_dir):
  train = data.load_split("mssl_shapes/32", "train", data_dir=tfds_dir)
  test = data.load_split("mssl_shapes/32", "test", data_dir=tfds_dir)
  assert (train.total_examples, test.total_examples) == (20_000, 5_000)
  assert train.num_classes == 10 and train.image_shape == (32, 32, 3)
  labels = np.array([int(e["label"]) for e in tfds.as_numpy(test.dataset)])
  assert np.bincount(labels).tolist() == [500] * 10
  # The tfds examples are the generator's images (the split is seeded).
  images, gen_labels = shapes.generate(5_000, seed=shapes.DEFAULT_SEED + 1)
  first = next(iter(tfds.as_numpy(test.dataset)))
  matches = np.flatnonzero((images == first["image"]).all(axis=(1, 2, 3)))
  assert len(matches) == 1 and gen_labels[matches[0]] == first["label"]


def _shape_descriptor(masks):
  """Rotation-, scale-, colour-invariant shape features from the object masks."""
  n, size, _ = masks.shape
  ys, xs = np.mgrid[0:size, 0:size] + 0.5
  feats = []
  for m in masks:
    w = m / m.sum()
    cy, cx = (w * ys).sum(), (w * xs).sum()
    rho = np.hypot(ys - cy, xs - cx)
    phi = np.arctan2(ys - cy, xs - cx)
    sel = m > 0.5
    bins = ((phi[sel] + np.pi) / (2 * np.pi) * 36).astype(int) % 36
    profile = np.zeros(36)
    np.maximum.at(profile, bins, rho[sel])
    profile /= max(profile.max(), 1e-6)
    harmonics = np.abs(np.fft.rfft(profile))[1:9] / 36
    radial = np.histogram(rho[sel] / max(rho[sel].max(), 1e-6), bins=8, range=(0, 1))[0]
    fill = m.sum() / (np.pi * max(rho[sel].max(), 1e-6) ** 2)
    feats.append(np.concatenate([harmonics, radial / max(sel.sum(), 1), [fill]]))
  feats = np.asarray(feats)
  return (feats - feats.mean(0)) / (feats.std(0) + 1e-6)


def _logistic_regression_accuracy(x_train, y_train, x_test, y_test, steps=300):
  x_train, x_test = jnp.asarray(x_train, jnp.float32), jnp.asarray(x_test, jnp.float32)
  params = {"w": jnp.zeros((x_train.shape[1], 10)), "b": jnp.zeros(10)}
  opt = optax.adam(0.05)
  state = opt.init(params)

  def loss(p):
    logits = x_train @ p["w"] + p["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y_train).mean() \
        + 1e-4 * jnp.sum(p["w"] ** 2)

  @jax.jit
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = opt.update(g, s)
    return optax.apply_updates(p, u), s
  for _ in range(steps):
    params, state = step(params, state)
  pred = jnp.argmax(x_test @ params["w"] + params["b"], axis=1)
  return float(jnp.mean(pred == jnp.asarray(y_test)))


def test_raw_pixels_do_poorly_but_shape_features_do_well():
  """Representation learning must matter: report both accuracies (chance is 10%)."""
  images, labels, masks = shapes.generate(6_000, seed=11, return_masks=True)
  raw = images.reshape(len(images), -1).astype(np.float32) / 255.0
  raw = (raw - raw[:5000].mean(0)) / (raw[:5000].std(0) + 1e-6)
  raw_acc = _logistic_regression_accuracy(raw[:5000], labels[:5000], raw[5000:],
                                          labels[5000:])
  feats = _shape_descriptor(masks)
  shape_acc = _logistic_regression_accuracy(feats[:5000], labels[:5000], feats[5000:],
                                            labels[5000:])
  print(f"raw-pixel logistic regression: {raw_acc:.3f}; shape features: {shape_acc:.3f}")
  assert raw_acc < 0.35
  assert shape_acc > 0.75
  assert shape_acc > raw_acc + 0.4
