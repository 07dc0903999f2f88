"""mssl.losses.frossl: any number of views (the golden values are in
tests/losses/test_registry.py)."""

import jax.numpy as jnp
import pytest

from mssl import losses

from losses.reference import make_batch


def test_frossl_is_symmetric_in_any_number_of_views(x64):
  views = [jnp.asarray(a) for a in make_batch("narrow", seed=5)]
  base = float(losses.frossl(views)[0])
  assert float(losses.frossl(views[::-1])[0]) == pytest.approx(base, rel=1e-12)
  eight = views + [v * 1.1 + 0.05 for v in views]
  loss, aux = losses.frossl(eight)
  assert {f"frobenius_v{i}" for i in range(8)} <= set(aux)
  assert float(loss) == pytest.approx(float(aux["frobenius"] + aux["invariance"]),
                                      rel=1e-12)
