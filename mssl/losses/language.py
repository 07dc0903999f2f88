"""Matrix cross-entropy for language models: next-token CE plus ``w`` times MCE.

Over the ``m`` target positions that count (``mask``), with predicted distributions
``p_i = softmax(logits_i)`` over a vocabulary of ``V`` tokens and one-hot targets ``y_i``:

* ``P = (1/m) sum_i y_i y_i^T``: the targets' second moment, a diagonal of token
  frequencies;
* ``Q = (1/m) sum_i p_i p_i^T + mu I_V``: the predictions' second moment with a ridge;
* ``MCE(P, Q) = -tr(P log Q) + tr(Q)`` with the exact matrix logarithm, the matrix
  cross-entropy of :mod:`mssl.matrix` applied to prediction and target distributions.

This is a reconstruction (``docs/methods.md``, "Matrix cross-entropy for language
models"): the Matrix-SSL paper reports fine-tuning a 7B model with CE + MCE, but its code is
not public. ``V x V`` matrices are never formed. With ``A`` the ``m x V`` matrix of the
``p_i`` and ``h(x) = log(1 + x) / x``,
``log(mu I + A^T A / m) = log(mu) I + A^T h(A A^T / (m mu)) A / (m mu)``, so

    tr(P log Q) = log(mu) + tr(K K^T h(G / mu)) / mu,    tr(Q) = tr(G) + mu V,

with the ``m x m`` Gram ``G = A A^T / m`` and the ``m x m`` gather ``K[j, i] = p_j[t_i] / m``
(the predicted probability of position ``j`` for the target of position ``i``). ``h(G)``
is :func:`mssl.matrix.spectral_function`'s, whose derivative is exact at repeated and zero
eigenvalues (masked positions give exact zeros). Memory is that of the logits plus
``O(m^2)``; under ``jit`` with the batch sharded, XLA gathers ``A`` for the Gram.

Everything is computed in float32 (or float64) whatever the logits' dtype (bf16 logits are
upcast before the softmax).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mssl import matrix

DEFAULT_W = 1.0
DEFAULT_MU = 1e-3


def _flatten(logits, targets, mask):
  """``(..., V)`` logits, ``(...)`` targets and mask -> ``(n, V)``, ``(n,)``, ``(n,)``,
  checked; the logits upcast to at least float32."""
  logits = jnp.asarray(logits)
  targets = jnp.asarray(targets)
  if logits.ndim < 2:
    raise ValueError(f"logits must have shape (..., V) with at least one position axis; "
                     f"got shape {logits.shape}.")
  if targets.shape != logits.shape[:-1]:
    raise ValueError(f"targets must have the logits' shape without the vocabulary axis, "
                     f"{logits.shape[:-1]}; got {targets.shape}.")
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise ValueError(f"targets must be integer token ids; got dtype {targets.dtype}.")
  if mask is None:
    mask = jnp.ones(targets.shape, bool)
  mask = jnp.asarray(mask)
  if mask.shape != targets.shape:
    raise ValueError(f"mask must have the targets' shape {targets.shape}; got {mask.shape}.")
  vocab = logits.shape[-1]
  dtype = jnp.promote_types(logits.dtype, jnp.float32)
  return (logits.reshape(-1, vocab).astype(dtype), targets.reshape(-1),
          mask.reshape(-1).astype(dtype))


def _check_mu(mu) -> None:
  if not (isinstance(mu, (int, float)) and mu > 0 and math.isfinite(mu)):
    raise ValueError(f"mu must be a positive number (the ridge of Q); got {mu!r}.")


def _mce_terms(probs, targets, weights, mu):
  """``MCE(P, Q)`` from the masked ``(n, V)`` probabilities; see the module docstring."""
  count = jnp.maximum(jnp.sum(weights), 1.0)
  a = probs * weights[:, None]                          # masked rows are zero
  gram = jnp.matmul(a, a.T, precision=matrix.HIGHEST) / count
  # K[j, i] = p_j[t_i] / m: the target columns of A (masked columns zeroed), n x n.
  cross = jnp.take(a, targets, axis=1) * weights[None, :] / count
  left = jnp.matmul(cross, cross.T, precision=matrix.HIGHEST)
  h = matrix.spectral_function(gram / mu, "log1p_over_x")
  trace_p = jnp.sum(weights) / count                    # 1 (0 when nothing counts)
  trace_p_log_q = math.log(mu) * trace_p + jnp.sum(left * h) / mu
  trace_q = jnp.trace(gram) + mu * probs.shape[-1]
  return -trace_p_log_q + trace_q


def matrix_cross_entropy(logits, targets, mask=None, *, mu: float = DEFAULT_MU):
  """``MCE(P, Q) = -tr(P log Q) + tr(Q)`` over the positions where ``mask`` is true.

  ``logits``: ``(..., V)`` next-token logits (any float dtype); ``targets``: ``(...)``
  integer token ids; ``mask``: ``(...)`` bool or 0/1 (``None``: every position counts).
  ``mu``: the ridge of ``Q``. Returns a scalar (float32, or float64 with x64 on).
  """
  _check_mu(mu)
  logits, targets, weights = _flatten(logits, targets, mask)
  return _mce_terms(jax.nn.softmax(logits, axis=-1), targets, weights, mu)


def _cross_entropy_terms(log_probs, targets, weights):
  picked = jnp.take_along_axis(log_probs, targets[:, None], axis=1)[:, 0]
  return -jnp.sum(picked * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(logits, targets, mask=None):
  """The mean next-token cross-entropy ``-log p_i[t_i]`` over the positions in ``mask``."""
  logits, targets, weights = _flatten(logits, targets, mask)
  return _cross_entropy_terms(jax.nn.log_softmax(logits, axis=-1), targets, weights)


def lm_loss(logits, targets, mask=None, *, w: float = DEFAULT_W, mu: float = DEFAULT_MU):
  """``(CE + w * MCE, {"ce": CE, "mce": MCE})`` for any model's next-token logits.

  ``w=0`` trains with the cross-entropy alone; MCE is still reported (without a gradient:
  the two runs of a CE vs CE+MCE comparison log the same quantities). Works with any Flax
  language model, e.g. for a causal LM whose ``logits[:, k]`` predicts ``tokens[:, k + 1]``
  and a 0/1 ``loss_mask`` marking the response tokens::

      logits = model.apply(params, tokens[:, :-1])
      loss, aux = lm_loss(logits, tokens[:, 1:], loss_mask[:, 1:], w=1.0, mu=1e-3)
  """
  if not (isinstance(w, (int, float)) and w >= 0 and math.isfinite(w)):
    raise ValueError(f"w must be a number >= 0 (the weight of MCE); got {w!r}.")
  _check_mu(mu)
  logits, targets, weights = _flatten(logits, targets, mask)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  ce = _cross_entropy_terms(log_probs, targets, weights)
  probs = jnp.exp(log_probs)
  if w == 0:
    probs = jax.lax.stop_gradient(probs)
  mce = _mce_terms(probs, targets, weights, mu)
  return ce + w * mce, {"ce": ce, "mce": mce}
