"""mssl.losses.predictive: BYOL and SimSiam on examples worked by hand (the numpy
references are in tests/losses/test_registry.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses

# Two identical rows per array. z1 is at 60 degrees from p2 (cosine 0.5), z2 along p1.
Z1 = jnp.array([[1.0, 0.0]] * 2)
P2 = jnp.array([[1.0, np.sqrt(3.0)]] * 2)
Z2 = P1 = jnp.array([[0.0, 3.0]] * 2)


def test_byol_sums_two_minus_twice_the_cosine_over_both_directions():
  loss, aux = losses.byol(Z1, Z2, P1, P2)
  assert float(loss) == pytest.approx((2 - 2 * 0.5) + (2 - 2 * 1.0))
  assert float(aux["cosine"]) == pytest.approx(0.75)
  assert float(losses.byol(Z1, Z1, -Z1, -Z1)[0]) == pytest.approx(8.0)  # opposite: 4 + 4
  assert float(losses.byol(3 * Z1, Z2, P1, 0.1 * P2)[0]) == pytest.approx(float(loss))


def test_simsiam_is_minus_the_mean_cosine():
  loss, aux = losses.simsiam(Z1, Z2, P1, P2)
  assert float(loss) == pytest.approx(-0.5 * (0.5 + 1.0))
  assert float(aux["cosine"]) == pytest.approx(0.75)
  assert float(losses.simsiam(Z1, Z1, -Z1, -Z1)[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_the_gradient_moves_z_towards_the_target_direction(name):
  """The gradient of z1 is orthogonal to z1 (a cosine) and descending it turns z1 towards
  p2: the loss falls."""
  fn = losses.get(name)
  grad = jax.grad(lambda z: fn(z, Z2, P1, P2)[0])(Z1)
  assert np.allclose(np.sum(np.asarray(grad) * np.asarray(Z1), -1), 0.0, atol=1e-6)
  assert float(grad[0, 1]) < 0  # towards +y, where p2 points
  moved = Z1 - 0.1 * grad
  assert float(fn(moved, Z2, P1, P2)[0]) < float(fn(Z1, Z2, P1, P2)[0])
