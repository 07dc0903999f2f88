"""mssl.losses.redundancy (Barlow Twins, VICReg): the components add up to the loss (the
golden values are in tests/losses/test_registry.py)."""

import jax.numpy as jnp
import pytest

from mssl import losses

from losses.reference import make_batch


def test_aux_components_add_up(x64):
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("wide")]
  loss, aux = losses.matrix_ssl(z1, z2, p1, p2, gamma=0.5)
  assert float(loss) == pytest.approx(float(aux["uniformity"] + 0.5 * aux["alignment"]))
  loss, aux = losses.vicreg(z1, z2)
  assert float(loss) == pytest.approx(float(25 * aux["invariance"] + 25 * aux["variance"]
                                            + aux["covariance"]))
  loss, aux = losses.barlow_twins(z1, z2, lambd=0.01, scale=0.5)
  assert float(loss) == pytest.approx(float(0.5 * (aux["on_diagonal"]
                                                   + 0.01 * aux["off_diagonal"])))
