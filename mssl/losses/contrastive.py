"""Contrastive objectives: SimCLR (NT-Xent) and spectral contrastive loss.

**SimCLR** (Chen, Kornblith, Norouzi & Hinton, ICML 2020): rows L2-normalised, cosine
similarities divided by the temperature over all 2B views; for each view the positive is
the other view of the same image and the negatives are the remaining 2B - 2 views:

    L = mean_i [ -s_{i,pos(i)} + logsumexp_{j != i} s_{ij} ],   s = rn(Z) rn(Z)^T / tau.

The self-similarity is masked out of the log-sum-exp. tau = 0.2 for CIFAR (solo-learn),
0.1 or 0.5 elsewhere.

**Spectral contrastive** (HaoChen, Wei, Gaidon & Ma, NeurIPS 2021): rows are projected onto
the ball of radius sqrt(mu) and

    L = [ -2/B sum_i <z1_i, z2_i> + 1/(B(B-1)) sum_{i != j} <z1_i, z2_j>^2 ] / mu.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mssl import matrix
from mssl.losses.common import check_positive, check_views
from mssl.losses.registry import register


@register("simclr", inputs="pair")
def simclr(z1, z2, *, temperature: float = 0.2):
  """NT-Xent over 2B views. aux: ``positive_cosine`` (mean), ``accuracy`` (the positive is
  the most similar view)."""
  check_positive(temperature, "temperature")
  z1, z2 = check_views([z1, z2], ["z1", "z2"])
  batch = z1.shape[0]
  z = matrix.row_normalize(jnp.concatenate([z1, z2], axis=0))
  cos = jnp.matmul(z, z.T, precision=matrix.HIGHEST)
  logits = cos / temperature
  self_mask = jnp.eye(2 * batch, dtype=bool)
  logits = jnp.where(self_mask, -jnp.inf, logits)
  positive = jnp.concatenate([jnp.arange(batch, 2 * batch), jnp.arange(batch)])
  positive_logit = jnp.take_along_axis(logits, positive[:, None], axis=1)[:, 0]
  loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - positive_logit)
  accuracy = jnp.mean(jnp.argmax(logits, axis=1) == positive)
  return loss, {"positive_cosine": jnp.mean(positive_logit) * temperature,
                "accuracy": accuracy}


def project_to_ball(z, radius):
  """Scales each row with norm above ``radius`` back onto the sphere of that radius."""
  norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
  return z * jnp.minimum(1.0, radius / jnp.maximum(norm, matrix.NORM_EPS))


@register("spectral_contrastive", inputs="pair")
def spectral_contrastive(z1, z2, *, mu: float = 1.0):
  """Spectral contrastive loss. aux: ``attraction`` (-2/B sum <z1_i, z2_i>, over mu) and
  ``repulsion`` (the off-diagonal squared term, over mu)."""
  check_positive(mu, "mu")
  z1, z2 = check_views([z1, z2], ["z1", "z2"])
  batch = z1.shape[0]
  radius = jnp.sqrt(jnp.asarray(mu, z1.dtype))
  z1, z2 = project_to_ball(z1, radius), project_to_ball(z2, radius)
  attraction = -2.0 * jnp.sum(z1 * z2) / batch / mu
  inner = jnp.matmul(z1, z2.T, precision=matrix.HIGHEST)
  off_diag = jnp.sum(jnp.square(inner)) - jnp.sum(jnp.square(jnp.diagonal(inner)))
  repulsion = off_diag / (batch * (batch - 1)) / mu
  return attraction + repulsion, {"attraction": attraction, "repulsion": repulsion}
