"""mssl.eval.metrics: evaluation on frozen features, kNN on a hand-built example and the
raw-pixel baseline (the final table's honesty is in tests/trainers/test_pretraining.py)."""

import numpy as np
import pytest

from mssl.eval import metrics


def test_knn_votes_by_temperature_weighted_cosine_on_a_hand_built_example():
  # Two classes on two rays; the test point is closest in angle to class 1's lone point
  # but class 0 has two points almost as close: k = 3 with a low temperature lets the
  # nearest (by cosine) win, a high temperature lets the majority win.
  train = np.array([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.8, 0.6]], np.float32)
  labels = np.array([0, 0, 1, 1])
  test = np.array([[0.79, 0.61]], np.float32)
  assert metrics.knn_predict(train, labels, test, num_classes=2, k=3,
                              temperature=0.01).tolist() == [1]
  assert metrics.knn_predict(train, labels, test, num_classes=2, k=3,
                              temperature=100.0).tolist() == [0]
  # Scale does not matter (cosine): multiplying a training row changes nothing.
  scaled = train * np.array([[5.0], [1.0], [1.0], [0.1]], np.float32)
  assert metrics.knn_accuracy(scaled, labels, test, [1], num_classes=2, k=3,
                               temperature=0.01) == 1.0


def test_pixel_features_average_blocks_and_resize_otherwise():
  images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype(np.float32)
  features = np.asarray(metrics.pixel_features(images, size=16))
  assert features.shape == (3, 16 * 16 * 3)
  np.testing.assert_allclose(features.reshape(3, 16, 16, 3),
                             images.reshape(3, 16, 2, 16, 2, 3).mean((2, 4)), atol=1e-6)
  assert np.asarray(metrics.pixel_features(images[:, :12, :12], size=16)).shape == \
      (3, 12 * 12 * 3)  # never upsampled
  odd = np.asarray(metrics.pixel_features(images[:, :30, :30], size=16))
  assert odd.shape == (3, 768)
  np.testing.assert_allclose(odd.mean(), images[:, :30, :30].mean(), atol=0.02)


def test_standardize_features_uses_the_training_statistics():
  rng = np.random.default_rng(1)
  train_x = rng.normal(3.0, 2.0, size=(500, 4))
  test_x = rng.normal(3.0, 2.0, size=(100, 4))
  a, b = metrics.standardize_features(train_x, test_x)
  np.testing.assert_allclose(a.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(a.std(0), 1.0, atol=1e-4)
  np.testing.assert_allclose(b, (test_x - train_x.mean(0)) / (train_x.std(0) + 1e-6),
                             atol=1e-5)  # float32


@pytest.mark.parametrize("size", [8, 16])
def test_pixel_probe_separates_colour_classes(size):
  # Three classes of flat colours: pixels alone solve them (the baseline must say so).
  rng = np.random.default_rng(2)
  colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
  labels = rng.integers(0, 3, size=300)
  images = colours[labels][:, None, None, :] * rng.uniform(0.5, 1.0, (300, 1, 1, 1))
  images = np.broadcast_to(images, (300, 16, 16, 3)).astype(np.float32)
  feats = np.asarray(metrics.pixel_features(images, size))
  tr, te = metrics.standardize_features(feats[:200], feats[200:])
  assert metrics.knn_accuracy(tr, labels[:200], te, labels[200:], num_classes=3) == 1.0
