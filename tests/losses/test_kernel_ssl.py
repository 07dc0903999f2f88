"""mssl.losses.kernel_ssl: the HSIC variant, and the authors' training loss and gradients
(the golden values are in tests/losses/test_registry.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses

from losses.reference import make_batch, np_hsic, rn


def test_kernel_ssl_reference_point_is_the_hsic_variant(x64):
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("correlated")]
  loss, aux = losses.kernel_ssl(z1, z2, p1, p2, kernel="linear", lam=1.0, mu=1.0,
                                gamma=0.0, order=4)
  expected = 0.5 * sum(
      float(losses.matrix_uniformity(p, z, lam=1.0, mu=1.0))
      - 0.003 * np_hsic(rn(np.asarray(p)) @ rn(np.asarray(p)).T,
                        rn(np.asarray(z)) @ rn(np.asarray(z)).T)
      for p, z in ((p2, z1), (p1, z2)))
  assert float(loss) == pytest.approx(expected, rel=1e-12)
  assert set(aux) == {"uniformity", "alignment", "hsic"}
  # gamma = 1 and w_hsic = 0 with the linear kernel is Matrix-SSL itself.
  ks = losses.kernel_ssl(z1, z2, p1, p2, w_hsic=0.0)[0]
  assert float(ks) == pytest.approx(float(losses.matrix_ssl(z1, z2, p1, p2)[0]), rel=1e-12)


# The authors' Kernel-SSL code (yifanzhang-pro/Matrix-SSL at commit bf80b2e,
# main_pretrain.py), transcribed call by call with an array module ``xp`` (numpy for
# values, jax.numpy to differentiate it): ``mce_loss_func(p, z, ..., HSIC=True)`` and the
# training loop's four calls. ``p`` is the teacher (the code runs it under no_grad),
# ``z`` the online branch after the predictor.
def official_matrix_log(xp, q, order):
  n = q.shape[0]
  q = q - xp.eye(n)
  cur, res = q, xp.zeros_like(q)
  for k in range(1, order + 1):
    res = res + cur / k if k % 2 == 1 else res - cur / k
    cur = cur @ q
  return res


def official_mce_loss_func(xp, p, z, lamda=1.0, mu=1.0, order=4, align_gamma=0.003,
                           correlation=True, hsic=False):
  normalize = lambda x: x / xp.maximum(xp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  p, z = normalize(p), normalize(z)
  m, n = z.shape
  j_m = xp.eye(m) - xp.ones((m, 1)) @ xp.ones((1, m)) / m
  if correlation:
    big_p = lamda * xp.eye(n)
    big_q = (p.T @ j_m @ z) / m + mu * xp.eye(n)
  else:
    big_p = (p.T @ j_m @ p) / m + mu * xp.eye(n)
    big_q = (z.T @ j_m @ z) / m + mu * xp.eye(n)
  loss = xp.trace(-big_p @ official_matrix_log(xp, big_q, order))
  if hsic:
    loss = loss + xp.trace(-align_gamma * (p @ p.T @ j_m @ z @ z.T @ j_m) / (m * m))
  return loss


def official_kernel_ssl_loss(xp, z1, z2, p1, p2, mce_lambd=1.0, mce_mu=1.0, gamma=1.0,
                             mce_order=4, align_gamma=0.003):
  """The loop of commit bf80b2e, run as ``--mce_mu 1.0 --mce_lambd 1.0 --HSIC
  --gamma 1.0``."""
  call = functools.partial(official_mce_loss_func, xp, lamda=mce_lambd, mu=mce_mu,
                           order=mce_order, align_gamma=align_gamma, hsic=True)
  return (call(p2, z1, correlation=True) + call(p1, z2, correlation=True)
          + gamma * call(p2, z1, correlation=False)
          + gamma * call(p1, z2, correlation=False)) * 0.5


def _kernel_ssl_recipes():
  """mssl's Kernel-SSL as users run it: the defaults and each config's config.loss."""
  from helpers import load_config
  recipes = {"defaults": {}}
  for name in ("kernel_ssl_r50", "kernel_ssl_r18_cifar"):
    recipes[name] = dict(load_config(name).loss)
  return recipes


@pytest.mark.parametrize("kind", ["narrow", "wide", "correlated"])
def test_kernel_ssl_equals_the_authors_training_loss_and_gradients(kind, x64):
  arrays = [np.asarray(a, np.float64) for a in make_batch(kind, seed=11)]
  want = official_kernel_ssl_loss(np, *arrays)
  want_grad = jax.grad(lambda z1, z2: official_kernel_ssl_loss(jnp, z1, z2, *arrays[2:]),
                       argnums=(0, 1))(*(jnp.asarray(a) for a in arrays[:2]))
  for name, kw in _kernel_ssl_recipes().items():
    loss = lambda z1, z2, p1, p2: losses.kernel_ssl(z1, z2, p1, p2, **kw)[0]
    got, got_grad = jax.value_and_grad(loss, argnums=(0, 1))(
        *(jnp.asarray(a) for a in arrays))
    assert abs(float(got) - want) <= 1e-9 * max(abs(want), 1.0), (name, float(got), want)
    for g, w in zip(got_grad, want_grad):
      err = np.linalg.norm(np.asarray(g) - np.asarray(w))
      assert err <= 1e-9 * max(np.linalg.norm(np.asarray(w)), 1.0), (name, err)


def test_kernel_ssl_hsic_weight_counts_once_per_loss_call(x64):
  """(1 + gamma) * w_hsic * HSIC per direction: the HSIC sits in all four calls."""
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("correlated", seed=12)]
  for gamma in (0.0, 0.5, 1.0):
    base, aux = losses.kernel_ssl(z1, z2, p1, p2, gamma=gamma, w_hsic=0.0)
    loss, aux = losses.kernel_ssl(z1, z2, p1, p2, gamma=gamma, w_hsic=0.01)
    assert float(base - loss) == pytest.approx((1 + gamma) * 0.01 * float(aux["hsic"]),
                                               rel=1e-10)
    arrays = [np.asarray(a) for a in (z1, z2, p1, p2)]
    assert float(loss) == pytest.approx(
        official_kernel_ssl_loss(np, *arrays, gamma=gamma, align_gamma=0.01), rel=1e-11)
