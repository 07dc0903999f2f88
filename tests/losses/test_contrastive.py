"""mssl.losses.contrastive: SimCLR and the spectral contrastive loss on examples worked by
hand (the numpy references are in tests/losses/test_registry.py)."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses
from mssl.losses.contrastive import project_to_ball

EYE = jnp.eye(2)                   # two images, orthogonal embeddings
SWAPPED = jnp.array([[0.0, 1.0], [1.0, 0.0]])


def test_simclr_of_two_orthogonal_pairs_by_hand():
  """Views [e1, e2, e1, e2]: each view's positive has cosine 1, its two negatives 0, so
  the loss is log(2 + e^(1/tau)) - 1/tau and every positive is the nearest view."""
  loss, aux = losses.simclr(EYE, EYE, temperature=0.5)
  assert float(loss) == pytest.approx(np.log(2 + np.exp(2.0)) - 2.0, rel=1e-6)
  assert float(aux["accuracy"]) == 1.0
  assert float(aux["positive_cosine"]) == pytest.approx(1.0)
  # Pairing e1 with e2 instead: each positive has cosine 0 and one negative cosine 1, so
  # the loss is log(2 + e^(1/tau)), 1/tau more, and no positive is the nearest view.
  loss, aux = losses.simclr(EYE, SWAPPED, temperature=0.5)
  assert float(loss) == pytest.approx(np.log(2 + np.exp(2.0)), rel=1e-6)
  assert float(aux["accuracy"]) == 0.0 and float(aux["positive_cosine"]) == 0.0


def test_simclr_is_blind_to_the_rows_scale():
  z1 = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
  z2 = z1 + 0.3
  scale = jnp.array([[0.1], [1.0], [5.0], [2.0], [0.5], [3.0]])
  chex.assert_trees_all_close(losses.simclr(z1 * scale, z2, temperature=0.2)[0],
                              losses.simclr(z1, z2, temperature=0.2)[0], rtol=1e-5)


def test_rows_beyond_the_ball_are_brought_back_to_its_sphere():
  z = jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
  chex.assert_trees_all_close(project_to_ball(z, 1.0),
                              jnp.array([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]), atol=1e-7)


def test_spectral_contrastive_by_hand():
  # Matching pairs: attraction -2/B * sum <z1_i, z2_i> = -2, no off-diagonal products.
  loss, aux = losses.spectral_contrastive(EYE, EYE)
  assert (float(loss), float(aux["attraction"]), float(aux["repulsion"])) == \
      pytest.approx((-2.0, -2.0, 0.0))
  # Crossed pairs: no attraction; <z1_0, z2_1>^2 + <z1_1, z2_0>^2 = 2 over B(B-1) = 2.
  loss, aux = losses.spectral_contrastive(EYE, SWAPPED)
  assert (float(loss), float(aux["attraction"]), float(aux["repulsion"])) == \
      pytest.approx((1.0, 0.0, 1.0))
  # mu = 4: rows of norm 2 fit in the ball of radius 2, unscaled; the loss is divided by
  # mu: -2/2 * (4 + 4) / 4 = -2. With mu = 1 they are scaled back to norm 1: -2 again.
  for mu in (4.0, 1.0):
    assert float(losses.spectral_contrastive(2 * EYE, 2 * EYE, mu=mu)[0]) == \
        pytest.approx(-2.0)
  assert float(losses.spectral_contrastive(2 * EYE, 2 * EYE, mu=16.0)[0]) == \
      pytest.approx(-2.0 / 2 * 8 / 16)  # inside the ball of radius 4: not scaled
