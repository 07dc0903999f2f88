"""mssl.losses.common: the objectives' input checks and their float32 compute."""

import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses

from losses.reference import make_batch, np_matrix_ssl


def test_bfloat16_embeddings_are_computed_in_float32():
  z1, z2, p1, p2 = [jnp.asarray(a, jnp.bfloat16) for a in make_batch("wide")]
  loss, _ = losses.matrix_ssl(z1, z2, p1, p2)
  assert loss.dtype == jnp.float32
  ref = np_matrix_ssl(*(np.asarray(a, np.float64) for a in (z1, z2, p1, p2)))
  assert float(loss) == pytest.approx(ref, rel=1e-4)


class TestBadInput:

  def _raises(self, fn, *fragments):
    with pytest.raises(ValueError) as info:
      fn()
    for fragment in fragments:
      assert fragment in str(info.value), (fragment, str(info.value))

  def test_views_of_different_shapes(self):
    a, b = jnp.ones((8, 4)), jnp.ones((8, 5))
    self._raises(lambda: losses.simclr(a, b, temperature=0.1), "same shape", "z1.shape",
                 "(8, 4)", "z2.shape=(8, 5)")
    self._raises(lambda: losses.matrix_ssl(a, a, a, b), "p2.shape=(8, 5)")
    self._raises(lambda: losses.frossl([a, a, b]), "views[2].shape=(8, 5)")

  def test_batch_of_one(self):
    one = jnp.ones((1, 4))
    for name in ("barlow_twins", "vicreg", "simclr", "spectral_contrastive"):
      self._raises(lambda: losses.get(name)(one, one), "z1", "at least 2", "(1, 4)")
    self._raises(lambda: losses.mmae_regularizer(one), "z", "at least 2")

  def test_wrong_rank(self):
    self._raises(lambda: losses.byol(*[jnp.ones(4)] * 4), "z1", "(B, D)", "(4,)")

  def test_frossl_needs_two_views(self):
    self._raises(lambda: losses.frossl([jnp.ones((4, 3))]), "at least 2 views", "got 1")
    self._raises(lambda: losses.frossl(jnp.ones((2, 4, 3))), "list or tuple")

  def test_unknown_names_and_options(self):
    self._raises(lambda: losses.get("simclr2"), "unknown objective 'simclr2'", "simclr",
                 "vicreg")
    x = jnp.ones((4, 3))
    self._raises(lambda: losses.matrix_ssl(x, x, x, x, logm="pade"), "logm", "'pade'",
                 "taylor", "exact")
    self._raises(lambda: losses.kernel_ssl(x, x, x, x, kernel="laplace"), "kernel",
                 "'laplace'", "gaussian")
    self._raises(lambda: losses.kernel_ssl(x, x, x, x, kernel="gaussian", mu=2.0), "mu",
                 "gaussian", "mu=2.0")
    self._raises(lambda: losses.simclr(x, x, temperature=0.0), "temperature", "positive")
    self._raises(lambda: losses.mec(x, x, x, x, lam_inv=-1.0), "lam_inv", "positive")
    self._raises(lambda: losses.matrix_ssl(x, x, x, x, order=0), "order", "positive")
