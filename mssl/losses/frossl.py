"""FroSSL: Frobenius norms of view covariances plus a mean-squared invariance term.

Skean, Dhakal, Jacobs & Giraldo, "FroSSL: Frobenius Norm Minimization for Efficient
Multiview Self-Supervised Learning", ECCV 2024 (official code OFSkean/FroSSL).

For V >= 2 views ``z_v`` of shape (B, D):

    Z_v  = cn(z_v)                      (columns L2-normalised; no centring by default)
    Zbar = mean_v Z_v
    K_v  = Z_v^T Z_v if B > D else Z_v Z_v^T, divided by its trace
    L    = sum_v [ log ||K_v||_F^2 + w * V * D * mean((Z_v - Zbar)^2) ]

``log ||K_v||_F^2`` is minus the matrix Renyi-2 entropy of ``K_v``: minimising it spreads
the spectrum. ``||K_v||_F`` is the same on both sides (they share non-zero eigenvalues),
so the choice of side is only about cost. ``w`` (``invariance_weight``) is 1 for CIFAR,
1.4 for STL-10 and 2 for ImageNet. The paper-era two-view form centred each column first
(``center=True``); the current official code does not (``center=False``, the default).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mssl import matrix
from mssl.losses.common import check_views
from mssl.losses.registry import register


@register("frossl", inputs="multi_view")
def frossl(views: Sequence[jax.Array], *, invariance_weight: float = 1.0,
           center: bool = False):
  """FroSSL over any number (>= 2) of views.

  Returns ``(loss, aux)`` with ``aux["frobenius"]`` / ``aux["invariance"]`` the sums over
  views and ``aux["frobenius_v{i}"]`` / ``aux["invariance_v{i}"]`` the per-view terms.
  """
  if isinstance(views, jax.Array) or not isinstance(views, (list, tuple)):
    raise ValueError("views must be a list or tuple of (B, D) arrays, one per view; got "
                     f"{type(views).__name__}.")
  if len(views) < 2:
    raise ValueError(f"frossl needs at least 2 views; got {len(views)}.")
  views = check_views(list(views), [f"views[{i}]" for i in range(len(views))])
  if center:
    views = [matrix.batch_center(v) for v in views]
  views = [matrix.col_normalize(v) for v in views]
  num_views = len(views)
  batch, dim = views[0].shape
  mean_view = sum(views) / num_views
  aux = {}
  frob_total, inv_total = 0.0, 0.0
  for i, v in enumerate(views):
    trace = jnp.sum(v * v)  # tr(K_v) on either side
    frobenius = jnp.log(matrix.product_frobenius_sq(v, v) / trace ** 2)
    invariance = invariance_weight * num_views * dim * jnp.mean(jnp.square(v - mean_view))
    aux[f"frobenius_v{i}"], aux[f"invariance_v{i}"] = frobenius, invariance
    frob_total, inv_total = frob_total + frobenius, inv_total + invariance
  aux["frobenius"], aux["invariance"] = frob_total, inv_total
  return frob_total + inv_total, aux
