"""Regularisers for masked image modelling: M-MAE and U-MAE.

**M-MAE** (Tan, Yang, Huang, Yuan & Zhang, "Information Flow in Self-Supervised
Learning", ICML 2024, arXiv 2309.17281; official code yifanzhang-pro/M-MAE) adds
``lam * (-TCR_mu(z))`` to the MAE reconstruction loss, where ``z`` is the CLS feature of
the masked forward pass after the encoder's final LayerNorm and
``TCR_mu(Z) = logdet(I_D + (mu/D) rn(Z)^T rn(Z))`` (``mu/D`` as in the official code; an
exact Cholesky log-determinant, on the smaller side). Defaults: lam = 0.01 (applied by
the trainer), mu = 3 (the official ViT-L run; the paper reports mu = 1 for ViT-B), no
centring. Maximising the coding rate is maximising a matrix entropy of the feature
covariance, which counteracts dimensional collapse.

**U-MAE** (Zhang, Wang & Wang, "How Mask Matters: Towards Theoretical Understandings of
Masked Autoencoders", NeurIPS 2022, arXiv 2210.08344; official code zhangq327/U-MAE) uses
``mean_{i,j} (rn(z) rn(z)^T)_{ij}^2``: the mean squared cosine similarity over all pairs
(diagonal included), the special case of a uniformity penalty on the second moment.

:func:`reconstruction_loss` is MAE's pixel loss and :func:`masked_image_objective` the
whole single-branch objective ``L_MAE + lam * regulariser(z)`` the masked-image trainer
(``mssl.steps.masked_image``) minimises; ``regularizer="mae"`` (a zero) or ``lam = 0`` is MAE.
See ``docs/methods.md`` for the sources and where mssl follows the official code.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from mssl import matrix
from mssl.losses.common import as_float, check_positive, check_views
from mssl.losses import registry
from mssl.losses.registry import register


def mmae_regularizer(z, *, mu: float = 3.0, center: bool = False) -> jax.Array:
  """``-TCR_mu(z)``: minimising it spreads the CLS features' spectrum."""
  check_positive(mu, "mu")
  (z,) = check_views([z], ["z"])
  return -matrix.total_coding_rate(z, mu=mu, center=center)


def umae_regularizer(z) -> jax.Array:
  """``mean_{i,j} (rn(z) rn(z)^T)_{ij}^2`` via ``||rn(z)^T rn(z)||_F^2 / B^2`` (dual-free:
  the Frobenius norm of the Gram equals that of the covariance)."""
  (z,) = check_views([as_float(z)], ["z"])
  zn = matrix.row_normalize(z)
  return matrix.product_frobenius_sq(zn, zn) / z.shape[0] ** 2


@register("mmae", inputs="single", min_views=1)
def mmae(z, *, mu: float = 3.0, center: bool = False):
  value = mmae_regularizer(z, mu=mu, center=center)
  return value, {"coding_rate": -value}


@register("umae", inputs="single", min_views=1)
def umae(z):
  value = umae_regularizer(z)
  return value, {"mean_sq_cosine": value}


@register("mae", inputs="single", min_views=1)
def mae(z):
  """Plain MAE: no regulariser (a zero that keeps the pipeline uniform)."""
  (z,) = check_views([z], ["z"])
  return jnp.zeros((), z.dtype), {}


def reconstruction_loss(pred, target, mask) -> jax.Array:
  """MAE's loss: per-patch mean squared error, averaged over the *masked* patches only.

  ``pred``, ``target``: (N, L, P) per-patch pixels (``target`` already normalised per patch
  when the model uses ``norm_pix_loss``); ``mask``: (N, L), 1 where the patch was hidden.
  """
  pred, target, mask = as_float(pred), as_float(target), as_float(mask)
  if pred.shape != target.shape or mask.shape != pred.shape[:2]:
    raise ValueError(f"pred {pred.shape} and target {target.shape} must match and mask "
                     f"{mask.shape} must be their first two axes.")
  per_patch = jnp.mean((pred - target) ** 2, axis=-1)
  return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_image_objective(pred, target, mask, cls, *, regularizer: str = "mmae",
                           lam: float = 0.01, reference_world_size: int = 1,
                           **regularizer_kwargs):
  """``reconstruction_loss + lam * regulariser(cls)``, and its components.

  ``regularizer``: ``"mmae"`` (``-TCR_mu``, keyword ``mu``, ``center``), ``"umae"`` or
  ``"mae"`` (none). ``cls``: the masked pass's CLS feature after the final LayerNorm.

  ``reference_world_size`` (W, default 1: the exact gradient) reproduces the gradient
  scale of the official M-MAE and U-MAE runs on W GPUs. Their ``GatherLayer.backward``
  returns only this rank's slice of the regulariser's gradient (no all-reduce), and DDP
  then averages the W ranks' parameter gradients, so the regulariser's gradient in those
  runs is ``1/W`` of the exact gradient of ``lam * reg`` (the reconstruction's is exact).
  A jit over the global batch computes the exact gradient; with W > 1 the regulariser
  enters as ``sg(reg) + (reg - sg(reg)) / W``: the same loss value, ``1/W`` of its
  gradient. The official recipes used W = 8 (8 GPUs x 128 = 1024).
  """
  regularizers = registry.single_batch()
  if regularizer not in regularizers:
    raise ValueError(f"regularizer must be one of {regularizers}; got {regularizer!r}.")
  if lam < 0:
    raise ValueError(f"lam must be non-negative; got {lam!r}.")
  if isinstance(reference_world_size, bool) or not (
      isinstance(reference_world_size, numbers.Integral) and reference_world_size >= 1):
    raise ValueError("reference_world_size must be an integer >= 1 (the number of GPUs "
                     f"of the run whose gradient scale to reproduce); got "
                     f"{reference_world_size!r}.")
  reconstruction = reconstruction_loss(pred, target, mask)
  value, aux = registry.get(regularizer)(as_float(cls), **regularizer_kwargs)
  regularizer_term = value
  if reference_world_size > 1:
    # Forward: exactly ``value``; backward: 1/W of its gradient (see the docstring).
    frozen = jax.lax.stop_gradient(value)
    regularizer_term = frozen + (value - frozen) / reference_world_size
  loss = reconstruction + lam * regularizer_term
  return loss, {"reconstruction": reconstruction, "regularizer": value, **aux}
