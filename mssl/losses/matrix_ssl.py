"""Matrix objectives on covariances: Matrix-SSL and MEC.

**Matrix-SSL** (Zhang, Tan, Yang, Huang & Yuan, "Matrix Information Theory for
Self-Supervised Learning", ICML 2024; official code yifanzhang-pro/Matrix-SSL). With
``C(a, b) = (1/B) rn(a)^T J rn(b)`` and ``TaylorLog_K`` the order-K series:

* uniformity ``U(p, z) = -lam * tr TaylorLog_K(C(p, z) + mu I_D)``
* alignment ``A(p, z) = -tr[(C(p, p) + mu I_D) TaylorLog_K(C(z, z) + mu I_D)]``
* loss ``0.5 * [U(p2, z1) + U(p1, z2) + gamma * (A(p2, z1) + A(p1, z2))]``

``z_v`` is the online branch (backbone, projector, predictor) and ``p_v`` the EMA
teacher's output, behind a stop-gradient. The paper writes uniformity as the matrix
cross-entropy ``MCE(I/D, C + ...)``; the official code (which produced the published
numbers, and which this module reproduces) drops MCE's ``+tr(Q)`` term, uses ``lam * I``
instead of ``I / D``, adds ``mu I`` and uses a 4th-order Taylor logarithm.
``logm="exact"`` replaces the series by the exact logarithm: ``log det`` (LU; the
cross-covariance is not symmetric) for uniformity and ``eigh`` for alignment.

**MEC** (Liu, Wang, Gao & Chen, "Self-Supervised Learning via Maximum Entropy Coding",
NeurIPS 2022; official code xinliu20/MEC):
``tr_K(p, z) = sum_{k<=K} (-1)^{k+1} tr((rn(p) rn(z)^T / lam_inv)^k) / k`` and
``loss = -lam_inv * 0.5 * (tr_K(p1, z2) + tr_K(p2, z1)) / B`` with
``lam_inv = B * eps2 / D`` (eps2 = 64), warmed up from 8x to 1x over 10 epochs
(:func:`mec_lam_inv_schedule`).

Both use the toolkit's dual form automatically (``side="auto"``): when B < D the traces
are taken on B x B Gram matrices; the value is the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mssl import matrix
from mssl.losses.common import as_float, check_positive, check_views, sg
from mssl.losses.registry import register

LOGM_PATHS = ("taylor", "exact")


def _check_common(order, logm, side):
  matrix.check_order(order)
  matrix.check_choice(logm, LOGM_PATHS, "logm")
  matrix.check_choice(side, matrix.SIDES, "side")


def matrix_uniformity(p, z, *, lam: float, mu: float, order: int = 4,
                      logm: str = "taylor", side: str = "auto") -> jax.Array:
  """``U(p, z) = -lam * tr TaylorLog_K(C(p, z) + mu I)`` (one direction; ``p`` is the
  target and gets no gradient)."""
  _check_common(order, logm, side)
  p, z = check_views([sg(as_float(p)), z], ["p", "z"])
  return -lam * matrix.trace_covariance_logm(p, z, shift=mu, method=logm, order=order,
                                             side=side)


def matrix_alignment(p, z, *, mu: float, order: int = 4, logm: str = "taylor",
                     side: str = "auto") -> jax.Array:
  """``A(p, z) = -tr[(C(p, p) + mu I) TaylorLog_K(C(z, z) + mu I)]`` (one direction;
  ``p`` is the target and gets no gradient)."""
  _check_common(order, logm, side)
  p, z = check_views([sg(as_float(p)), z], ["p", "z"])
  return -matrix.trace_covariance_product_logm(p, z, shift=mu, method=logm, order=order,
                                               side=side)


@register("matrix_ssl", inputs="two_branch", teacher="ema")
def matrix_ssl(z1, z2, p1, p2, *, lam: float = 1.0, mu: float = 1.0, gamma: float = 1.0,
               order: int = 4, logm: str = "taylor", side: str = "auto"):
  """Matrix-SSL: ``0.5 [U(p2, z1) + U(p1, z2) + gamma (A(p2, z1) + A(p1, z2))]``.

  Returns ``(loss, {"uniformity", "alignment"})`` (each the mean of its two directions).
  """
  z1, z2, p1, p2 = check_views([z1, z2, p1, p2], ["z1", "z2", "p1", "p2"])
  kw = dict(mu=mu, order=order, logm=logm, side=side)
  uniformity = 0.5 * (matrix_uniformity(p2, z1, lam=lam, **kw)
                      + matrix_uniformity(p1, z2, lam=lam, **kw))
  alignment = 0.5 * (matrix_alignment(p2, z1, **kw) + matrix_alignment(p1, z2, **kw))
  loss = uniformity + gamma * alignment
  return loss, {"uniformity": uniformity, "alignment": alignment}


def mec_lam_inv(batch_size: int, dim: int, eps2: float = 64.0) -> float:
  """MEC's ``lam_inv = B * eps2 / D`` (``eps2 = eps_d^2`` of the coding rate)."""
  return batch_size * eps2 / dim


def mec_lam_inv_schedule(batch_size: int, dim: int, steps_per_epoch: int, *,
                         eps2: float = 64.0, warmup_epochs: float = 10.0,
                         start_factor: float = 8.0) -> optax.Schedule:
  """``lam_inv`` per step: linear from ``start_factor x`` to ``1 x`` over the warm-up."""
  value = mec_lam_inv(batch_size, dim, eps2)
  return optax.linear_schedule(start_factor * value, value,
                               transition_steps=max(1, int(warmup_epochs * steps_per_epoch)))


def _mec_lam_inv_from_context(context, *, eps2: float = 64.0, warmup_epochs: float = 10.0,
                              start_factor: float = 8.0):
  """MEC's ``lam_inv`` schedule for a run (its settings live in ``config.loss``)."""
  return mec_lam_inv_schedule(context.batch_size, context.embedding_dim,
                              context.steps_per_epoch, eps2=eps2,
                              warmup_epochs=warmup_epochs, start_factor=start_factor)


def mec_trace(p, z, *, lam_inv: float, order: int = 4, side: str = "auto") -> jax.Array:
  """``tr TaylorLog_K(I_B + rn(p) rn(z)^T / lam_inv)`` (``p`` gets no gradient)."""
  matrix.check_order(order)
  p, z = check_views([sg(as_float(p)), z], ["p", "z"])
  scale = jnp.sqrt(1.0 / jnp.asarray(lam_inv, p.dtype))
  # tr((a b^T)^k) with a = rn(p)/sqrt(lam_inv), b = rn(z)/sqrt(lam_inv): the B x B Gram is
  # the "dual" side of product_power_traces' (D x D) convention.
  traces = matrix.product_power_traces(matrix.row_normalize(p) * scale,
                                       matrix.row_normalize(z) * scale, order=order,
                                       side=side)
  return matrix.taylor_trace_from_power_traces(traces, order)


@register("mec", inputs="two_branch", teacher="ema",
          schedules={"lam_inv": _mec_lam_inv_from_context})
def mec(z1, z2, p1, p2, *, lam_inv, order: int = 4, side: str = "auto"):
  """MEC: ``-lam_inv * 0.5 * (tr_K(p1, z2) + tr_K(p2, z1)) / B``.

  ``lam_inv`` may be a traced scalar: left None in ``config.loss`` it follows the
  registered warm-up schedule (settings ``eps2``, ``warmup_epochs``, ``start_factor``).
  Returns ``(loss, {"coding_rate"})`` with the (positive) mean Taylor trace.
  """
  z1, z2, p1, p2 = check_views([z1, z2, p1, p2], ["z1", "z2", "p1", "p2"])
  if isinstance(lam_inv, (int, float)):
    check_positive(lam_inv, "lam_inv")
  batch = z1.shape[0]
  coding_rate = 0.5 * (mec_trace(p1, z2, lam_inv=lam_inv, order=order, side=side)
                       + mec_trace(p2, z1, lam_inv=lam_inv, order=order, side=side))
  loss = -lam_inv * coding_rate / batch
  return loss, {"coding_rate": coding_rate}
