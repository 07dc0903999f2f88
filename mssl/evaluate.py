"""Evaluators on frozen features: weighted kNN and a linear probe.

* :func:`knn_accuracy`: cosine-similarity kNN with temperature-weighted votes (Wu et al.,
  "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", 2018; the
  protocol of solo-learn and DINO): the ``k`` nearest training features vote for their
  label with weight ``exp(sim / T)``; k = 20, T = 0.07.
* :func:`linear_probe`: a linear classifier on frozen, standardised features trained with
  its own schedule (SGD with momentum, cosine learning rate, mini-batches), the offline
  linear evaluation; its accuracy on the test features is returned.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mssl import matrix


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_chunk(test, train, train_labels, *, k, num_classes, temperature):
  sim = jnp.matmul(test, train.T, precision=jax.lax.Precision.HIGHEST)
  top_sim, top_idx = jax.lax.top_k(sim, k)
  votes = jax.nn.one_hot(train_labels[top_idx], num_classes) * \
      jnp.exp(top_sim / temperature)[..., None]
  return jnp.argmax(jnp.sum(votes, axis=1), axis=-1)


def knn_predict(train_feats, train_labels, test_feats, *, num_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 1024) -> np.ndarray:
  """Predicted labels of ``test_feats`` by temperature-weighted cosine kNN."""
  train = matrix.row_normalize(jnp.asarray(train_feats, jnp.float32))
  test = matrix.row_normalize(jnp.asarray(test_feats, jnp.float32))
  labels = jnp.asarray(train_labels)
  k = min(k, train.shape[0])
  preds = [_knn_chunk(test[i:i + chunk], train, labels, k=k, num_classes=num_classes,
                      temperature=temperature) for i in range(0, test.shape[0], chunk)]
  return np.asarray(jnp.concatenate(preds))


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, *, num_classes: int,
                 k: int = 20, temperature: float = 0.07) -> float:
  preds = knn_predict(train_feats, train_labels, test_feats, num_classes=num_classes, k=k,
                      temperature=temperature)
  return float(np.mean(preds == np.asarray(test_labels)))


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, num_classes: int,
                 epochs: int = 30, batch_size: int = 256, lr: float = 0.1,
                 weight_decay: float = 0.0, seed: int = 0) -> float:
  """Accuracy of a linear classifier trained on frozen, standardised features."""
  mean = train_feats.mean(0, keepdims=True)
  std = train_feats.std(0, keepdims=True) + 1e-6
  x_train = jnp.asarray((train_feats - mean) / std, jnp.float32)
  x_test = jnp.asarray((test_feats - mean) / std, jnp.float32)
  y_train = jnp.asarray(train_labels)
  n, dim = x_train.shape
  steps_per_epoch = max(1, n // batch_size)
  total = epochs * steps_per_epoch
  opt = optax.chain(optax.add_decayed_weights(weight_decay),
                    optax.sgd(optax.cosine_decay_schedule(lr, total), momentum=0.9))
  params = {"w": jnp.zeros((dim, num_classes)), "b": jnp.zeros(num_classes)}
  state = opt.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y).mean()

  @jax.jit
  def epoch(carry, perm):
    def step(carry, idx):
      p, s = carry
      g = jax.grad(loss_fn)(p, x_train[idx], y_train[idx])
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    batches = perm[: steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)
    return jax.lax.scan(step, carry, batches)[0]

  rng = np.random.default_rng(seed)
  carry = (params, state)
  for _ in range(epochs):
    carry = epoch(carry, jnp.asarray(rng.permutation(n)))
  params = carry[0]
  preds = jnp.argmax(x_test @ params["w"] + params["b"], axis=-1)
  return float(jnp.mean(preds == jnp.asarray(test_labels)))
