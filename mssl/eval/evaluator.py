"""Evaluation of an encoder during and after training, on the eval split.

:class:`Evaluator` takes a features function ``apply(variables, images) -> outputs`` and
gives the periodic metrics (kNN, the online classifier's accuracy, effective ranks; the
embedding spectrum by its own call); :meth:`Evaluator.probe` gives the final linear probe
and kNN on frozen features, of an encoder or (``pixels=True``) of the images' own pixels.
Numbers come from :mod:`mssl.eval.metrics` (pure functions); this module feeds it batches
(tf.data, imported on first use) on the mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mssl import matrix, sharding
from mssl.eval import metrics


@dataclasses.dataclass
class Evaluator:
  """kNN, classifier accuracy and embedding statistics on the eval split.

  ``apply(variables, images)`` (the features function) returns a dict of per-example
  outputs in evaluation mode: ``features`` (always; what kNN and the probes use), and
  optionally ``projection`` (its spectrum is plotted) and ``logits`` (accuracy reported as
  ``logits_metric``). Calling the evaluator on a train state gives the periodic metrics
  (a dict), :meth:`spectrum` the last evaluation's spectrum; :meth:`probe` trains
  the final linear probe on the same features.
  """
  config: ml_collections.ConfigDict
  mesh: Any
  num_classes: int
  apply: Callable
  logits_metric: str = "eval/online_probe_accuracy"
  knn: bool = True

  def __post_init__(self):
    c = self.config
    process, count = jax.process_index(), jax.process_count()
    self.local_batch = c.eval.batch_size // count

    from mssl import data as data_lib  # TensorFlow: only where eval data is loaded

    def make(split_name):
      split = data_lib.load_split(c.data.dataset, split_name, data_dir=c.data.data_dir,
                                  download=c.data.download, process_index=process,
                                  process_count=count,
                                  train_split=c.data.train_split or "train",
                                  strict=c.data.get("strict", False))
      total = split.total_examples
      num = (data_lib.eval_num_batches(total, count, self.local_batch)
             if total is not None else None)
      return functools.partial(data_lib.eval_dataset, split, batch_size=self.local_batch,
                               image_size=c.data.image_size,
                               crop_fraction=c.data.eval_crop_fraction, num_batches=num,
                               autotune=c.data.get("autotune", True))
    self.eval_data = make(c.data.eval_split)
    self.knn_data = make(c.data.knn_split) if self.knn else None

    self.last_features = None  # (features, labels) of the last evaluation's subsample
    self._spectrum = None
    self._apply = jax.jit(self.apply, in_shardings=(sharding.replicated(self.mesh),
                                               sharding.batch_sharded(self.mesh)))

  def eval_batches(self):
    """This process's eval-split batches (numpy; padded examples have ``mask = 0``)."""
    return self.eval_data().as_numpy_iterator()

  def outputs(self, variables, make_ds, apply=None) -> dict:
    """Every output (float32) of ``apply`` (default: the network's) and ``label`` of the
    valid (unpadded) examples."""
    apply = apply or self._apply
    collected: dict = {}
    for batch in make_ds().as_numpy_iterator():
      images = sharding.global_batch(self.mesh, batch["image"])
      host = sharding.to_host({  # one gather per batch for outputs, mask and labels
          "out": apply(variables, images),
          "meta": sharding.global_batch(self.mesh, {"mask": batch["mask"],
                                                    "label": batch["label"]})})
      valid = np.asarray(host["meta"]["mask"]) > 0
      for key, value in host["out"].items():
        collected.setdefault(key, []).append(np.asarray(value, np.float32)[valid])
      collected.setdefault("label", []).append(np.asarray(host["meta"]["label"])[valid])
    return {k: np.concatenate(v) for k, v in collected.items()}

  def __call__(self, state) -> dict:
    """The periodic metrics of a train state's network
    (:class:`mssl.steps.state.TrainState`). The spectrum of this evaluation's embedding is
    kept for :meth:`spectrum`, a subsample of its features for :attr:`last_features`."""
    variables = {"batch_stats": {}, **state.variables}
    out = self.outputs(variables, self.eval_data)
    labels = out["label"]
    labelled = labels >= 0
    found = {f"eval/effective_rank_{k}": float(matrix.effective_rank(jnp.asarray(out[k])))
               for k in ("features", "projection") if k in out}
    if "logits" in out and labelled.any():
      found[self.logits_metric] = float(np.mean(
          np.argmax(out["logits"][labelled], -1) == labels[labelled]))
    if self.knn and labelled.any():
      train_out = self.outputs(variables, self.knn_data)
      keep = train_out["label"] >= 0
      if keep.any():
        found["eval/knn_accuracy"] = metrics.knn_accuracy(
            train_out["features"][keep], train_out["label"][keep],
            out["features"][labelled], labels[labelled], num_classes=self.num_classes,
            k=self.config.eval.knn_k, temperature=self.config.eval.knn_temperature)
    embedding = out.get("projection", out["features"])
    # What the embedding plot draws at the end of training: a fixed subsample.
    points = self.config.eval.get("embedding_points", 2000)
    keep = np.flatnonzero(labelled)[:points]
    self.last_features = (out["features"][keep], labels[keep])
    self._spectrum = np.asarray(matrix.embedding_spectrum(jnp.asarray(embedding)))
    return found

  def spectrum(self):
    """The eigenvalue spectrum of the last evaluation's embedding (the projection, or the
    features of a network without one), or None before the first evaluation."""
    return self._spectrum

  def probe(self, variables, pixels: bool = False) -> dict:
    """Offline linear probe and kNN on frozen features of ``variables``' encoder, or
    (``pixels=True``) on the images' downsampled pixels (:func:`metrics.pixel_features`),
    standardised: the baseline an encoder has to beat."""
    apply = None
    if pixels:
      size = self.config.eval.get("pixel_size", 16)
      apply = jax.jit(lambda _, images: {"features": metrics.pixel_features(images, size)},
                      in_shardings=(sharding.replicated(self.mesh),
                                    sharding.batch_sharded(self.mesh)))
    out = self.outputs(variables, self.eval_data, apply)
    train_out = self.outputs(variables, self.knn_data, apply)
    if pixels:
      train_out["features"], out["features"] = metrics.standardize_features(
          train_out["features"], out["features"])
    e = self.config.eval
    kw = dict(num_classes=self.num_classes)
    return {
        "linear_probe": metrics.linear_probe(
            train_out["features"], train_out["label"], out["features"], out["label"],
            epochs=e.probe_epochs, lr=e.probe_lr,
            normalization=e.get("probe_normalization", "standardize"),
            optimizer=e.get("probe_optimizer", "sgd"),
            warmup_epochs=e.get("probe_warmup_epochs", 0), **kw),
        "knn": metrics.knn_accuracy(train_out["features"], train_out["label"],
                                    out["features"], out["label"], k=e.knn_k,
                                    temperature=e.knn_temperature, **kw),
    }
