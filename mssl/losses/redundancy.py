"""Redundancy-reduction objectives: Barlow Twins and VICReg.

**Barlow Twins** (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021): each view is
batch-normalised over the batch (biased variance, eps 1e-5, no affine);
``C = z1n^T z2n / B`` and ``L = s [sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2]`` with
lambd = 0.0051 and scale s = 1 (official) or 0.1 (solo-learn's CIFAR recipe with LARS).

**VICReg** (Bardes, Ponce & LeCun, ICLR 2022; the form of solo-learn):

    25 * mean((z1 - z2)^2)
    + 25 * sum_v mean_j relu(1 - sqrt(var_j(z_v) + 1e-4))
    + 1  * sum_v sum_{i != j} cov(z_v)_ij^2 / D

with unbiased variance and covariance (divided by B - 1).
"""

from __future__ import annotations

import jax.numpy as jnp

from mssl import matrix
from mssl.losses.common import check_views, off_diagonal_sq_sum
from mssl.losses.registry import register


def _batch_norm(z, eps=1e-5):
  mean = jnp.mean(z, axis=0, keepdims=True)
  var = jnp.mean(jnp.square(z - mean), axis=0, keepdims=True)  # biased, as BatchNorm1d
  return (z - mean) / jnp.sqrt(var + eps)


@register("barlow_twins", inputs="pair")
def barlow_twins(z1, z2, *, lambd: float = 0.0051, scale: float = 1.0):
  """Barlow Twins. aux: ``on_diagonal`` and ``off_diagonal`` (before ``scale``)."""
  z1, z2 = check_views([z1, z2], ["z1", "z2"])
  batch = z1.shape[0]
  c = jnp.matmul(_batch_norm(z1).T, _batch_norm(z2), precision=matrix.HIGHEST) / batch
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  off_diag = off_diagonal_sq_sum(c)
  return scale * (on_diag + lambd * off_diag), {"on_diagonal": on_diag,
                                                "off_diagonal": off_diag}


def _unbiased_covariance(z):
  zc = z - jnp.mean(z, axis=0, keepdims=True)
  return jnp.matmul(zc.T, zc, precision=matrix.HIGHEST) / (z.shape[0] - 1)


@register("vicreg", inputs="pair")
def vicreg(z1, z2, *, sim_weight: float = 25.0, var_weight: float = 25.0,
           cov_weight: float = 1.0):
  """VICReg. aux: ``invariance``, ``variance``, ``covariance`` (unweighted terms)."""
  z1, z2 = check_views([z1, z2], ["z1", "z2"])
  dim = z1.shape[1]
  invariance = jnp.mean(jnp.square(z1 - z2))
  variance, covariance = 0.0, 0.0
  for z in (z1, z2):
    cov = _unbiased_covariance(z)
    std = jnp.sqrt(jnp.diagonal(cov) + 1e-4)
    variance = variance + jnp.mean(jnp.maximum(1.0 - std, 0.0))
    covariance = covariance + off_diagonal_sq_sum(cov) / dim
  loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
  return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}
