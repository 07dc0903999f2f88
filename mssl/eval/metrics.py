"""Metrics on frozen features: weighted kNN, a linear probe, the raw-pixel baseline.

* :func:`knn_accuracy`: cosine-similarity kNN with temperature-weighted votes (Wu et al.,
  "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", 2018; the
  protocol of solo-learn and DINO): the ``k`` nearest training features vote for their
  label with weight ``exp(sim / T)``; k = 20, T = 0.07.
* :func:`linear_probe`: a linear classifier on frozen features trained with its own
  schedule (warm-up + cosine, mini-batches), the offline linear evaluation: standardised
  features and SGD (solo-learn), or MAE's BatchNorm head (no affine) with LARS; its
  accuracy on the test features is returned.
* :func:`pixel_features`: the raw-pixel baseline's "features" (downsampled images), so
  the final table says whether an encoder beats the pixels it was given.
* :func:`standardize_features`: both sets standardised with the training set's
  statistics (the pixel baseline's features; images are standardised in the step,
  :func:`mssl.steps.common.standardize`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mssl import matrix, optim


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


PROBE_NORMALIZATIONS = ("standardize", "batchnorm")
PROBE_OPTIMIZERS = ("sgd", "lars")


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, num_classes: int,
                 epochs: int = 30, batch_size: int = 256, lr: float = 0.1,
                 weight_decay: float = 0.0, seed: int = 0,
                 normalization: str = "standardize", optimizer: str = "sgd",
                 warmup_epochs: float = 0.0, bn_momentum: float = 0.9,
                 bn_epsilon: float = 1e-6) -> float:
  """Accuracy of a linear classifier trained on frozen features.

  ``normalization="standardize"``: features standardised with the training set's mean and
  standard deviation. ``"batchnorm"``: MAE's probe head, a BatchNorm without affine
  parameters before the linear layer (batch statistics while training, running averages
  with ``bn_momentum`` at test time). ``optimizer``: SGD with momentum 0.9, or LARS
  (MAE's linear-probe optimiser); linear warm-up for ``warmup_epochs``, then cosine.
  """
  if normalization not in PROBE_NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {PROBE_NORMALIZATIONS}; got "
                     f"{normalization!r}.")
  if optimizer not in PROBE_OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {PROBE_OPTIMIZERS}; got {optimizer!r}.")
  train_feats = np.asarray(train_feats, np.float32)
  test_feats = np.asarray(test_feats, np.float32)
  if normalization == "standardize":
    mean = train_feats.mean(0, keepdims=True)
    std = train_feats.std(0, keepdims=True) + 1e-6
    train_feats, test_feats = (train_feats - mean) / std, (test_feats - mean) / std
  x_train = jnp.asarray(train_feats)
  x_test = jnp.asarray(test_feats)
  y_train = jnp.asarray(train_labels)
  n, dim = x_train.shape
  batch_size = min(batch_size, n)
  steps_per_epoch = max(1, n // batch_size)
  total = epochs * steps_per_epoch
  schedule = optim.learning_rate_schedule(
      base_lr=lr, global_batch=batch_size, total_steps=total,
      warmup_steps=int(warmup_epochs * steps_per_epoch), scale_by_batch=False)
  if optimizer == "lars":
    opt = optax.lars(schedule, weight_decay=weight_decay, momentum=0.9,
                     weight_decay_mask=lambda p: {"w": True, "b": False},
                     trust_ratio_mask=lambda p: {"w": True, "b": False})
  else:
    opt = optax.chain(optax.add_decayed_weights(weight_decay),
                      optax.sgd(schedule, momentum=0.9))
  params = {"w": jnp.zeros((dim, num_classes)), "b": jnp.zeros(num_classes)}
  stats = {"mean": jnp.zeros(dim), "var": jnp.ones(dim)}
  use_bn = normalization == "batchnorm"

  def normalize(x, mean, var):
    return (x - mean) * jax.lax.rsqrt(var + bn_epsilon) if use_bn else x

  def loss_fn(p, x, y):
    mean, var = (x.mean(0), x.var(0)) if use_bn else (0.0, 1.0)
    logits = normalize(x, mean, var) @ p["w"] + p["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (mean, var)

  @jax.jit
  def epoch(carry, perm):
    def step(carry, idx):
      p, s, st = carry
      g, (mean, var) = jax.grad(loss_fn, has_aux=True)(p, x_train[idx], y_train[idx])
      u, s = opt.update(g, s, p)
      if use_bn:
        unbiased = var * idx.shape[0] / max(idx.shape[0] - 1, 1)
        st = {"mean": bn_momentum * st["mean"] + (1 - bn_momentum) * mean,
              "var": bn_momentum * st["var"] + (1 - bn_momentum) * unbiased}
      return (optax.apply_updates(p, u), s, st), None
    batches = perm[: steps_per_epoch * batch_size].reshape(steps_per_epoch, -1)
    return jax.lax.scan(step, carry, batches)[0]

  rng = np.random.default_rng(seed)
  carry = (params, opt.init(params), stats)
  for _ in range(epochs):
    carry = epoch(carry, jnp.asarray(rng.permutation(n)))
  params, _, stats = carry
  logits = normalize(x_test, stats["mean"], stats["var"]) @ params["w"] + params["b"]
  return float(jnp.mean(jnp.argmax(logits, axis=-1) == jnp.asarray(test_labels)))


def pixel_features(images, size: int = 16) -> jax.Array:
  """``(N, H, W, C)`` images -> ``(N, s * s * C)`` pixels, ``s = min(size, H, W)``,
  downsampled by area averaging (antialiased resize): the raw-pixel baseline. kNN and the
  linear probe standardise them like any features."""
  images = jnp.asarray(images, jnp.float32)
  n, h, w, c = images.shape
  s = min(size, h, w)
  if h % s == 0 and w % s == 0:  # exact area averaging over (h/s) x (w/s) blocks
    images = images.reshape(n, s, h // s, s, w // s, c).mean(axis=(2, 4))
  else:
    images = jax.image.resize(images, (n, s, s, c), method="linear", antialias=True)
  return images.reshape(n, s * s * c)


def standardize_features(train_feats, test_feats) -> tuple[np.ndarray, np.ndarray]:
  """Both sets standardised with the training set's per-dimension mean and std."""
  train = np.asarray(train_feats, np.float32)
  mean, std = train.mean(0), train.std(0) + 1e-6
  return (train - mean) / std, (np.asarray(test_feats, np.float32) - mean) / std
