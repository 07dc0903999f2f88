"""mssl.losses.matrix_ssl: Matrix-SSL's and MEC's building blocks, MEC's lambda schedule
and the dual form (the golden values are in tests/losses/test_registry.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses

from losses.reference import make_batch


def test_building_blocks_stop_the_target_gradient():
  p, z = (jnp.asarray(a, jnp.float32) for a in make_batch("narrow")[:2])
  for fn in (lambda p, z: losses.matrix_uniformity(p, z, lam=1.0, mu=1.0),
             lambda p, z: losses.matrix_alignment(p, z, mu=1.0),
             lambda p, z: losses.mec_trace(p, z, lam_inv=1.0)):
    gp, gz = jax.grad(fn, argnums=(0, 1))(p, z)
    assert np.all(np.asarray(gp) == 0) and np.linalg.norm(np.asarray(gz)) > 0


def test_mec_lam_inv_schedule():
  assert losses.mec_lam_inv(1024, 2048) == pytest.approx(32.0)
  schedule = losses.mec_lam_inv_schedule(1024, 2048, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(8 * 32.0)
  assert float(schedule(50)) == pytest.approx(4.5 * 32.0)
  assert float(schedule(100)) == pytest.approx(32.0)
  assert float(schedule(10_000)) == pytest.approx(32.0)
  # The loss takes the current (traced) value.
  arrays = [jnp.asarray(a, jnp.float32) for a in make_batch("narrow")]
  traced = jax.jit(lambda lam_inv: losses.mec(*arrays, lam_inv=lam_inv)[0])(schedule(3))
  eager = losses.mec(*arrays, lam_inv=float(schedule(3)))[0]
  np.testing.assert_allclose(traced, eager, rtol=1e-5)


def test_dual_form_is_chosen_and_agrees(x64):
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("narrow")]  # B = 6 < D = 16
  for name, kw in (("matrix_ssl", {}), ("mec", {"lam_inv": 1.0}),
                   ("kernel_ssl", {"w_hsic": 0.1})):
    fn = losses.get(name)
    values = [float(fn(z1, z2, p1, p2, side=s, **kw)[0]) for s in ("primal", "dual", "auto")]
    assert values[0] == pytest.approx(values[1], rel=1e-11) == values[2]
  values = [float(losses.matrix_ssl(z1, z2, p1, p2, logm="exact", side=s)[0])
            for s in ("primal", "dual")]
  assert values[0] == pytest.approx(values[1], rel=1e-10)
