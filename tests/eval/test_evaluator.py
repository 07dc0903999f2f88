"""mssl.eval.evaluator: on the mesh, the eval split's outputs are the examples' own (padding
dropped, in order) and the metrics and the offline probe are mssl.eval.metrics' numbers on
them (computed here on the host, without a mesh)."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mssl import data, matrix, sharding
from mssl.eval import evaluator as evaluator_lib
from mssl.eval import metrics as metrics_lib
from mssl.steps.state import TrainState

from helpers import load_config

W = np.random.default_rng(0).normal(size=(8 * 8 * 3, 6)).astype(np.float32)


def _apply(variables, images):
  """A features function of fixed weights: linear features, a projection, logits."""
  flat = images.reshape(images.shape[0], -1)
  return {"features": flat @ variables["params"]["w"], "projection": flat[:, :5],
          "logits": flat[:, :10]}


def _config(tfds_dir):
  config = load_config("quickstart")
  config.data.data_dir = tfds_dir
  config.data.image_size = 8
  config.data.eval_split = "test[:40]"   # 3 batches of 16, the last one padded
  config.data.knn_split = "train[:60]"
  config.eval.batch_size = 16
  config.eval.probe_epochs = 1
  return config


def _host(config, split_name):
  """The split's (images, labels) as the evaluator's batches hold them, padding dropped."""
  split = data.load_split(config.data.dataset, split_name, data_dir=config.data.data_dir)
  batches = list(tfds.as_numpy(data.eval_dataset(
      split, batch_size=config.eval.batch_size, image_size=config.data.image_size,
      crop_fraction=config.data.eval_crop_fraction)))
  keep = [b["mask"] > 0 for b in batches]
  return (np.concatenate([b["image"][k] for b, k in zip(batches, keep)]),
          np.concatenate([b["label"][k] for b, k in zip(batches, keep)]))


def test_periodic_metrics_are_those_of_the_valid_examples(tfds_dir):
  config = _config(tfds_dir)
  mesh = sharding.make_mesh()
  evaluator = evaluator_lib.Evaluator(config, mesh, 10, apply=_apply)
  variables = {"params": {"w": W}, "batch_stats": {}}
  images, labels = _host(config, "test[:40]")
  train_images, train_labels = _host(config, "train[:60]")
  want = _apply(variables, images)
  out = evaluator.outputs(sharding.replicate(mesh, variables), evaluator.eval_data)
  assert len(out["label"]) == len(labels) == 40
  np.testing.assert_array_equal(out["label"], labels)
  chex.assert_trees_all_close({k: out[k] for k in want}, want, rtol=1e-5, atol=1e-5)
  assert evaluator.spectrum() is None and evaluator.last_features is None  # none yet
  metrics = evaluator(sharding.replicate(mesh, TrainState(step=jnp.zeros((), jnp.int32),
                                                         params={"w": W})))
  spectrum = evaluator.spectrum()
  assert set(metrics) == {"eval/effective_rank_features", "eval/effective_rank_projection",
                          "eval/online_probe_accuracy", "eval/knn_accuracy"}
  for key in ("features", "projection"):
    assert metrics[f"eval/effective_rank_{key}"] == pytest.approx(
        float(matrix.effective_rank(jnp.asarray(want[key]))), rel=1e-4)
  assert metrics["eval/online_probe_accuracy"] == pytest.approx(
      np.mean(np.argmax(want["logits"], -1) == labels))
  assert metrics["eval/knn_accuracy"] == pytest.approx(metrics_lib.knn_accuracy(
      _apply(variables, train_images)["features"], train_labels, want["features"], labels,
      num_classes=10, k=config.eval.knn_k, temperature=config.eval.knn_temperature))
  chex.assert_trees_all_close(  # the projection's spectrum, when there is one
      spectrum, np.asarray(matrix.embedding_spectrum(jnp.asarray(want["projection"]))),
      rtol=1e-4, atol=1e-6)


def test_the_pixel_probe_reads_the_standardised_pixels(tfds_dir):
  config = _config(tfds_dir)
  evaluator = evaluator_lib.Evaluator(config, sharding.make_mesh(), 10, apply=_apply)
  images, labels = _host(config, "test[:40]")
  train_images, train_labels = _host(config, "train[:60]")
  results = evaluator.probe({"params": {}}, pixels=True)
  assert set(results) == {"linear_probe", "knn"} and 0.0 <= results["linear_probe"] <= 1.0
  train_x, test_x = metrics_lib.standardize_features(
      np.asarray(metrics_lib.pixel_features(train_images, 16)),   # 8 px: never upsampled
      np.asarray(metrics_lib.pixel_features(images, 16)))
  assert train_x.shape == (60, 8 * 8 * 3)
  assert results["knn"] == pytest.approx(metrics_lib.knn_accuracy(
      train_x, train_labels, test_x, labels, num_classes=10, k=config.eval.knn_k,
      temperature=config.eval.knn_temperature))
