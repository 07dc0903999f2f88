"""Predictive (distillation-style) objectives: BYOL and SimSiam.

**BYOL** (Grill et al., NeurIPS 2020): ``L(z, p) = 2 - 2 mean_i cos(z_i, sg(p_i))`` with
``z`` the online predictor's output and ``p`` the EMA target's projection; the loss is the
sum of both directions, ``L(z1, p2) + L(z2, p1)``.

**SimSiam** (Chen & He, CVPR 2021): ``L(z, p) = -mean_i cos(z_i, sg(p_i))`` with ``p`` the
projector output of the same network; the loss is ``0.5 L(z1, p2) + 0.5 L(z2, p1)``.
"""

from __future__ import annotations

import jax.numpy as jnp

from mssl.losses.common import check_views, cosine_similarity, sg
from mssl.losses.registry import register


@register("byol", inputs="two_branch", teacher="ema")
def byol(z1, z2, p1, p2):
  """BYOL (sum over directions). aux: ``cosine`` (mean over both directions)."""
  z1, z2, p1, p2 = check_views([z1, z2, p1, p2], ["z1", "z2", "p1", "p2"])
  cos_a = jnp.mean(cosine_similarity(z1, sg(p2)))
  cos_b = jnp.mean(cosine_similarity(z2, sg(p1)))
  return (2.0 - 2.0 * cos_a) + (2.0 - 2.0 * cos_b), {"cosine": 0.5 * (cos_a + cos_b)}


@register("simsiam", inputs="two_branch", teacher="online")
def simsiam(z1, z2, p1, p2):
  """SimSiam (mean over directions). aux: ``cosine``."""
  z1, z2, p1, p2 = check_views([z1, z2, p1, p2], ["z1", "z2", "p1", "p2"])
  cos = 0.5 * (jnp.mean(cosine_similarity(z1, sg(p2)))
               + jnp.mean(cosine_similarity(z2, sg(p1))))
  return -cos, {"cosine": cos}
