"""Tests for mssl.matrix: golden values, identities, gradients, dual form, sharding."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from conftest import enable_x64, tolerance
from mssl import matrix as M

P = jax.sharding.PartitionSpec


def _spd(rng, n, cond):
  """A random SPD matrix with eigenvalues geometrically spaced in [1/cond, 1]."""
  q, _ = np.linalg.qr(rng.normal(size=(n, n)))
  return (q * np.geomspace(1.0 / cond, 1.0, n)) @ q.T


def _mpmath_logm(s, digits=40):
  """The logarithm of a symmetric PD matrix in 40-digit arithmetic (ground truth)."""
  import mpmath
  with mpmath.workdps(digits):
    w, q = mpmath.eigsy(mpmath.matrix(s.tolist()))
    out = q * mpmath.diag([mpmath.log(x) for x in w]) * q.T
    return np.array(out.tolist(), dtype=np.float64)


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _central_fd(f, x, eps=1e-3):
  """4th-order central finite differences of a scalar function (float64)."""
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  f = jax.jit(f)  # compiled once: 4 evaluations per entry
  for idx in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[idx] = eps
    vals = [float(f(jnp.asarray(x + k * e))) for k in (2, 1, -1, -2)]
    grad[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * eps)
  return grad


# ------------------------------------------------------------------ logarithms --------
class TestLogm:

  # float32's eigensolver is accurate to about eps * cond, so "ill-conditioned" is
  # 1e3 there and 1e8 in float64 (each well past the well-conditioned case). At 1e8
  # scipy's own logm is ~4e-11 off the truth, so the float64 ill-conditioned case is also
  # checked against a 40-digit mpmath logarithm, and against scipy up to scipy's error.
  @pytest.mark.parametrize("conditioning", ["well", "ill"])
  def test_eigh_matches_scipy(self, dtype, conditioning):
    rng = np.random.default_rng(0)
    cond = {"well": 10.0, "ill": tolerance(dtype, 1e8, 1e3)}[conditioning]
    s = _spd(rng, 24, cond)
    ref = scipy.linalg.logm(s).real
    out = M.logm(jnp.asarray(s, dtype), method="eigh")
    assert out.dtype == dtype
    budget = tolerance(dtype, 1e-10, 1e-5)
    if np.dtype(dtype) == np.float64 and conditioning == "ill":
      truth = _mpmath_logm(s)
      assert _rel(out, truth) <= budget
      budget += _rel(ref, truth)
    assert _rel(out, ref) <= budget

  def test_taylor_matches_handwritten_series(self, dtype):
    rng = np.random.default_rng(1)
    a = np.eye(8) + 0.3 * rng.normal(size=(8, 8))  # not symmetric: the series is general
    for order in (1, 2, 4, 7):
      x = a - np.eye(8)
      ref = sum((-1) ** (k + 1) / k * np.linalg.matrix_power(x, k)
                for k in range(1, order + 1))
      out = M.logm(jnp.asarray(a, dtype), method="taylor", order=order)
      assert _rel(out, ref) <= tolerance(dtype, 1e-12, 1e-5)
      trace = M.trace_taylor_logm(jnp.asarray(a, dtype), order)
      np.testing.assert_allclose(trace, np.trace(ref), rtol=tolerance(dtype, 1e-11, 1e-4),
                                 atol=tolerance(dtype, 1e-12, 1e-5))

  def test_taylor_gap_shrinks_with_order(self, x64):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    a = (q * (1.0 + np.linspace(-0.5, 0.5, 10))) @ q.T  # spectral radius of A - I = 0.5
    exact = M.logm(jnp.asarray(a), method="eigh")
    gaps = [_rel(M.logm(jnp.asarray(a), method="taylor", order=k), exact)
            for k in (1, 2, 4, 8, 16)]
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-5

  def test_power_traces_golden(self, x64):
    rng = np.random.default_rng(3)
    m, left = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    for order in (1, 2, 3, 6, 9):
      ref = [np.trace(np.linalg.matrix_power(m, k)) for k in range(order + 1)]
      np.testing.assert_allclose(M.power_traces(jnp.asarray(m), order), ref, rtol=1e-11)
      ref_left = [np.trace(left @ np.linalg.matrix_power(m, k)) for k in range(order + 1)]
      np.testing.assert_allclose(
          M.power_traces(jnp.asarray(m), order, jnp.asarray(left)), ref_left, rtol=1e-11)

  def test_taylor_coefficients_reexpand_shifted_series(self, x64):
    rng = np.random.default_rng(4)
    c = 0.2 * _spd(rng, 5, 3.0)
    for shift in (1.0, 1.3, 0.8):
      traces = M.power_traces(jnp.asarray(c), 4)
      via_traces = M.taylor_trace_from_power_traces(traces, 4, shift)
      direct = np.trace(M.taylor_logm(jnp.asarray(c + shift * np.eye(5)), 4))
      np.testing.assert_allclose(via_traces, direct, rtol=1e-12)

  def test_logdet_methods_agree(self, dtype):
    rng = np.random.default_rng(5)
    s = _spd(rng, 12, 50.0) + 0.5 * np.eye(12)
    ref = np.linalg.slogdet(s)[1]
    for method in M.LOGDET_METHODS:
      np.testing.assert_allclose(M.logdet(jnp.asarray(s, dtype), method=method), ref,
                                 rtol=tolerance(dtype, 1e-12, 1e-5))
    nonsym = s + 0.1 * rng.normal(size=(12, 12))
    np.testing.assert_allclose(
        M.trace_logm(jnp.asarray(nonsym, dtype), method="slogdet"),
        np.trace(scipy.linalg.logm(nonsym)).real, rtol=tolerance(dtype, 1e-10, 1e-4))


# ------------------------------------------------------------------ identities --------
class TestIdentities:

  def test_kl_of_itself_is_zero_and_mce_is_entropy(self, dtype):
    rng = np.random.default_rng(6)
    p = jnp.asarray(_spd(rng, 10, 20.0), dtype)
    for method in M.LOGM_METHODS:
      q = p if method == "eigh" else 0.5 * p + 0.5 * jnp.eye(10, dtype=dtype)
      atol = tolerance(dtype, 1e-12, 1e-5)
      assert abs(float(M.matrix_kl(q, q, method=method))) <= atol
      np.testing.assert_allclose(M.matrix_cross_entropy(q, q, method=method),
                                 M.matrix_entropy(q, method=method), atol=atol)

  def test_matrix_entropy_golden(self, x64):
    rng = np.random.default_rng(7)
    p = _spd(rng, 9, 30.0)
    w = np.linalg.eigvalsh(p)
    np.testing.assert_allclose(M.matrix_entropy(jnp.asarray(p)),
                               -np.sum(w * np.log(w)) + np.sum(w), rtol=1e-12)
    q = _spd(rng, 9, 5.0)
    np.testing.assert_allclose(
        M.matrix_cross_entropy(jnp.asarray(p), jnp.asarray(q)),
        np.trace(-p @ scipy.linalg.logm(q).real + q), rtol=1e-11)

  def test_von_neumann_of_maximally_mixed_state(self, dtype):
    for d in (2, 7, 32):
      rho = jnp.eye(d, dtype=dtype) / d
      np.testing.assert_allclose(M.von_neumann_entropy(rho), np.log(d),
                                 rtol=tolerance(dtype, 1e-12, 1e-6))
      for alpha in (0.5, 2.0, 3.0):
        np.testing.assert_allclose(M.renyi_entropy(rho, alpha), np.log(d),
                                   rtol=tolerance(dtype, 1e-12, 1e-5))

  def test_renyi_golden_and_limit(self, x64):
    rng = np.random.default_rng(8)
    rho = _spd(rng, 6, 10.0)
    rho /= np.trace(rho)
    w = np.linalg.eigvalsh(rho)
    for alpha in (0.5, 2.0, 3.5):
      np.testing.assert_allclose(M.renyi_entropy(jnp.asarray(rho), alpha),
                                 np.log(np.sum(w ** alpha)) / (1 - alpha), rtol=1e-11)
    vn = float(M.von_neumann_entropy(jnp.asarray(rho)))
    near_one = float(M.renyi_entropy(jnp.asarray(rho), 1.0 + 1e-6))
    assert abs(near_one - vn) < 1e-5

  def test_effective_rank(self):
    rng = np.random.default_rng(9)
    iso = rng.normal(size=(4096, 16)).astype(np.float32)
    assert 15.0 <= float(M.effective_rank(jnp.asarray(iso))) <= 16.0
    low = (rng.normal(size=(4096, 3)) @ np.linalg.qr(rng.normal(size=(16, 3)))[0].T)
    assert 2.7 <= float(M.effective_rank(jnp.asarray(low, jnp.float32))) <= 3.05
    const = np.ones((64, 16), np.float32)
    assert float(M.effective_rank(jnp.asarray(const))) == pytest.approx(1.0, abs=1e-3)

  def test_hsic_independent_vs_dependent(self, x64):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(500, 3))
    y_indep = rng.normal(size=(500, 3))
    y_dep = np.tanh(x) + 0.1 * rng.normal(size=(500, 3))
    kx = M.gram_matrix(jnp.asarray(x), kernel="gaussian", bandwidth=1.0)
    indep = float(M.hsic(kx, M.gram_matrix(jnp.asarray(y_indep), kernel="gaussian",
                                           bandwidth=1.0)))
    dep = float(M.hsic(kx, M.gram_matrix(jnp.asarray(y_dep), kernel="gaussian",
                                         bandwidth=1.0)))
    assert 0 <= indep < 0.003 and dep > 20 * indep

  def test_hsic_and_kernels_golden(self, x64):
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    j = np.eye(7) - 1.0 / 7
    kx, ky = x @ x.T, (y @ y.T + 1.0) ** 3
    np.testing.assert_allclose(
        M.hsic(M.gram_matrix(jnp.asarray(x)),
               M.gram_matrix(jnp.asarray(y), kernel="polynomial", degree=3)),
        np.trace(kx @ j @ ky @ j) / 49, rtol=1e-12)
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(
        M.gram_matrix(jnp.asarray(x), jnp.asarray(y), kernel="gaussian", bandwidth=0.7),
        np.exp(-d2 / (2 * 0.49)), rtol=1e-12)
    np.testing.assert_allclose(M.centered_gram(jnp.asarray(kx)), j @ kx @ j, atol=1e-12)

  def test_mutual_information(self, x64):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(64, 3))
    kx = M.gram_matrix(jnp.asarray(x), kernel="gaussian", bandwidth=1.0)
    ky = M.gram_matrix(jnp.asarray(rng.normal(size=(64, 3))), kernel="gaussian",
                       bandwidth=1.0)
    for alpha in (1.0, 2.0):
      self_mi = float(M.matrix_mutual_information(kx, kx, alpha=alpha))
      indep_mi = float(M.matrix_mutual_information(kx, ky, alpha=alpha))
      assert self_mi > indep_mi > -1e-9
    # Golden (alpha = 2): H = -log ||K / tr K||_F^2.
    k1, k2 = np.asarray(kx), np.asarray(ky)
    h = lambda k: -np.log(np.sum((k / np.trace(k)) ** 2))
    np.testing.assert_allclose(M.matrix_mutual_information(kx, ky, alpha=2.0),
                               h(k1) + h(k2) - h(k1 * k2), rtol=1e-11)

  def test_total_coding_rate_golden(self, dtype):
    rng = np.random.default_rng(13)
    z = rng.normal(size=(20, 12))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    ref = np.linalg.slogdet(np.eye(12) + 3.0 / 12 * zn.T @ zn)[1]
    np.testing.assert_allclose(M.total_coding_rate(jnp.asarray(z, dtype), mu=3.0), ref,
                               rtol=tolerance(dtype, 1e-12, 1e-5))

  def test_cross_covariance_golden(self, x64):
    rng = np.random.default_rng(14)
    a, b = rng.normal(size=(9, 5)), rng.normal(size=(9, 4))
    rn = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    j = np.eye(9) - 1.0 / 9
    np.testing.assert_allclose(M.cross_covariance(jnp.asarray(a), jnp.asarray(b)),
                               rn(a).T @ j @ rn(b) / 9, atol=1e-14)
    np.testing.assert_allclose(
        M.cross_covariance(jnp.asarray(a), center=False, normalize=False), a.T @ a / 9,
        atol=1e-13)


# ------------------------------------------------------------------ gradients ---------
class TestGradients:

  def test_check_grads_generic(self, x64):
    rng = np.random.default_rng(15)
    s = jnp.asarray(_spd(rng, 6, 10.0))
    q = jnp.asarray(_spd(rng, 6, 5.0))
    z = jnp.asarray(rng.normal(size=(8, 5)))
    checks = {
        "logm_eigh": lambda a: M.logm(a) * q,
        "logm_taylor": lambda a: M.logm(0.5 * a + 0.5 * jnp.eye(6), method="taylor"),
        "entropy": M.matrix_entropy,
        "mce": lambda a: M.matrix_cross_entropy(q, a),
        "mkl": lambda a: M.matrix_kl(a, q),
        "renyi": lambda a: M.renyi_entropy(a, 1.7),
        "logdet_chol": M.logdet,
        "logdet_eigh": lambda a: M.logdet(a, method="eigh"),
        "log1p_over_x": lambda a: M.spectral_function(a, "log1p_over_x"),
    }
    for name, fn in checks.items():
      jax.test_util.check_grads(jax.jit(fn), (s,), order=1, modes=("fwd", "rev"), atol=1e-6,
                                rtol=1e-6, eps=1e-5)
    batch_checks = {
        "tcr": lambda v: M.total_coding_rate(v, mu=2.0),
        "cov_traces": lambda v: M.covariance_power_traces(v, v[::-1] ** 2, order=4),
        "cov_logdet": lambda v: M.trace_covariance_logm(v, method="exact", shift=0.5),
        "hsic_gauss": lambda v: M.hsic(M.gram_matrix(v, kernel="gaussian", bandwidth=2.0),
                                       M.gram_matrix(v ** 2)),
        "mi": lambda v: M.matrix_mutual_information(M.gram_matrix(v, kernel="gaussian",
                                                                  bandwidth=2.0),
                                                    M.gram_matrix(v, kernel="polynomial")),
        "erank": M.effective_rank,
    }
    for name, fn in batch_checks.items():
      jax.test_util.check_grads(jax.jit(fn), (z,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6,
                                eps=1e-5)

  @staticmethod
  def _tied_problem(rng, batch=4, dim=10, mu=1.0):
    """D > B: C(z, z) has rank B - 1, so C + mu I has eigenvalue mu repeated D - B + 1 times."""
    z = rng.normal(size=(batch, dim))
    p = rng.normal(size=(batch, dim))
    target = M.cross_covariance(jnp.asarray(p)) + mu * jnp.eye(dim)

    def cross(z, method="eigh"):
      q = M.cross_covariance(z) + mu * jnp.eye(dim, dtype=z.dtype)
      return jnp.sum(target.astype(z.dtype) * M.logm(q, method=method).T)

    def entropy(z):
      return M.matrix_entropy(M.cross_covariance(z) + mu * jnp.eye(dim, dtype=z.dtype))
    return z, {"tr(P log Q)": cross, "ME(C + mu I)": entropy}

  def test_exact_at_ties_and_rank_deficiency_float64(self, x64):
    rng = np.random.default_rng(16)
    z, fns = self._tied_problem(rng)
    for name, fn in fns.items():
      grad = np.asarray(jax.grad(fn)(jnp.asarray(z)))
      assert np.all(np.isfinite(grad)), name
      assert _rel(grad, _central_fd(fn, z)) <= 1e-6, name
    # Exactly repeated eigenvalues of a symmetric input (not only through a covariance).
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = (q * np.array([0.5, 0.5, 0.5, 2.0, 2.0, 3.0])) @ q.T
    w = jnp.asarray(rng.normal(size=(6, 6)))
    fn = lambda a: jnp.sum(w * M.logm(a)) + M.matrix_entropy(a)
    grad = np.asarray(jax.grad(fn)(jnp.asarray(a)))
    assert _rel(grad, _central_fd(fn, a, eps=1e-4)) <= 1e-6

  def test_float32_gradient_at_ties(self):
    rng = np.random.default_rng(17)
    z, fns = self._tied_problem(rng)
    for name, fn in fns.items():
      with enable_x64(True):
        ref = np.asarray(jax.grad(fn)(jnp.asarray(z)))
      got = np.asarray(jax.grad(fn)(jnp.asarray(z, jnp.float32)))
      assert got.dtype == np.float32
      assert np.linalg.norm(got - ref) <= 1e-5 * np.linalg.norm(ref), name

  def test_floor_gives_zero_slope_below_it(self, x64):
    # A PSD matrix with zero eigenvalues: the log is floored, the gradient stays finite.
    v = jnp.asarray(np.random.default_rng(18).normal(size=(5, 2)))
    fn = lambda v: M.matrix_entropy(v @ v.T)
    assert np.all(np.isfinite(np.asarray(jax.grad(fn)(v))))


# ------------------------------------------------------------------ dual form ---------
class TestDualForm:

  @pytest.mark.parametrize("shape", [(6, 20), (24, 5)])
  def test_dual_equals_primal(self, x64, shape):
    rng = np.random.default_rng(19)
    a = jnp.asarray(rng.normal(size=shape))
    b = jnp.asarray(rng.normal(size=shape) + 0.5 * np.asarray(a))
    funcs = {
        "power_traces": lambda s: M.covariance_power_traces(a, b, order=6, side=s),
        "auto_traces": lambda s: M.covariance_power_traces(a, order=5, side=s),
        "logdet_cross": lambda s: M.trace_covariance_logm(a, b, method="exact", shift=1.5,
                                                          side=s),
        "taylor_cross": lambda s: M.trace_covariance_logm(a, b, method="taylor",
                                                          shift=1.0, side=s),
        "tcr": lambda s: M.total_coding_rate(a, mu=3.0, side=s),
        "tcr_centered": lambda s: M.total_coding_rate(a, mu=3.0, center=True, side=s),
        "frobenius": lambda s: M.product_frobenius_sq(a, b, side=s),
        "product_logm_taylor": lambda s: M.trace_covariance_product_logm(
            a, b, shift=1.0, method="taylor", order=4, side=s),
        "product_logm_taylor_shift": lambda s: M.trace_covariance_product_logm(
            a, b, shift=1.7, method="taylor", order=5, side=s),
        "product_logm_exact": lambda s: M.trace_covariance_product_logm(
            a, b, shift=1.0, method="exact", side=s),
        "product_logm_exact_shift": lambda s: M.trace_covariance_product_logm(
            a, b, shift=0.6, method="exact", side=s),
        "product_logm_order1": lambda s: M.trace_covariance_product_logm(
            a, b, order=1, side=s),
    }
    for name, fn in funcs.items():
      primal, dual = np.asarray(fn("primal")), np.asarray(fn("dual"))
      assert _rel(dual, primal) <= 1e-10, name
      # And the gradients.
      grad = lambda s: jax.grad(lambda x: jnp.sum(
          M.covariance_power_traces(x, b, order=4, side=s)))(a)
      assert _rel(grad("dual"), grad("primal")) <= 1e-10

  def test_dual_exact_gradients_equal_primal(self, x64):
    rng = np.random.default_rng(22)
    a, b = (jnp.asarray(rng.normal(size=(5, 12))) for _ in range(2))
    for shift in (1.0, 0.6):
      grad = lambda s: jax.jit(jax.grad(lambda x, y: M.trace_covariance_product_logm(
          x, y, shift=shift, method="exact", side=s), argnums=(0, 1)))(a, b)
      for got, want in zip(grad("dual"), grad("primal")):
        assert _rel(got, want) <= 1e-9

  def test_product_logm_golden(self, x64):
    rng = np.random.default_rng(23)
    p, z = rng.normal(size=(9, 6)), rng.normal(size=(9, 6))
    rn = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    j = np.eye(9) - 1.0 / 9
    cpp, czz = rn(p).T @ j @ rn(p) / 9, rn(z).T @ j @ rn(z) / 9
    ref = np.trace((cpp + 2 * np.eye(6)) @ scipy.linalg.logm(czz + 2 * np.eye(6)).real)
    for side in ("primal", "dual"):
      np.testing.assert_allclose(M.trace_covariance_product_logm(
          jnp.asarray(p), jnp.asarray(z), shift=2.0, method="exact", side=side), ref,
          rtol=1e-11)

  def test_infinite_dimensional_operator_needs_unit_shift(self):
    with pytest.raises(ValueError, match="shift must be 1"):
      M.operator_trace_logm(jnp.eye(3), dim=None, shift=2.0)

  def test_auto_side_picks_the_smaller(self):
    assert M._resolve_side("auto", 8, 64) == "dual"
    assert M._resolve_side("auto", 64, 8) == "primal"
    assert M._resolve_side("primal", 8, 64) == "primal"


# ------------------------------------------------------------------ sharding ----------
def test_sharded_equals_unsharded(data_mesh):
  rng = np.random.default_rng(20)
  z = rng.normal(size=(32, 16)).astype(np.float32)
  p = (rng.normal(size=(32, 16)) + z).astype(np.float32)
  s = _spd(rng, 16, 10.0).astype(np.float32)
  batch_fns = {
      "cross_covariance": lambda z, p: M.cross_covariance(z, p),
      "power_traces_dual": lambda z, p: M.covariance_power_traces(z, p, order=4,
                                                                  side="dual"),
      "power_traces_primal": lambda z, p: M.covariance_power_traces(z, p, order=4,
                                                                    side="primal"),
      "logdet_exact": lambda z, p: M.trace_covariance_logm(z, p, method="exact"),
      "tcr": lambda z, p: M.total_coding_rate(z, mu=3.0),
      "erank": lambda z, p: M.effective_rank(z),
      "hsic": lambda z, p: M.hsic(M.gram_matrix(z, kernel="gaussian"), M.gram_matrix(p)),
      "mi": lambda z, p: M.matrix_mutual_information(M.gram_matrix(z, kernel="gaussian"),
                                                     M.gram_matrix(p, kernel="gaussian")),
      "spectrum": lambda z, p: M.embedding_spectrum(z),
      "frobenius": lambda z, p: M.product_frobenius_sq(z, p, side="dual"),
  }
  matrix_fns = {
      "logm": lambda a: M.logm(a),
      "taylor": lambda a: M.logm(a, method="taylor"),
      "entropy": M.matrix_entropy,
      "mce": lambda a: M.matrix_cross_entropy(a, a + jnp.eye(16)),
      "vn": M.von_neumann_entropy,
      "logdet": M.logdet,
  }
  rows = jax.sharding.NamedSharding(data_mesh, P("data"))
  zs, ps, ss = (jax.device_put(x, rows) for x in (z, p, s))
  assert len(zs.sharding.device_set) == len(jax.devices())
  for name, fn in batch_fns.items():
    want = jax.jit(fn)(z, p)
    got = jax.jit(fn)(zs, ps)
    # float32 sums over the 32 rows in another order (8 partial sums, then across
    # devices): rounding ~ 32 eps of the sum of magnitudes, more after the cancellation in
    # log-eigenvalues; measured up to 40% of the former 2e-5 bound with
    # --xla_cpu_max_isa=AVX. A real difference (one device's rows only) is O(1).
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
  for name, fn in matrix_fns.items():
    np.testing.assert_allclose(jax.jit(fn)(ss), jax.jit(fn)(s), rtol=1e-4, atol=1e-5,
                               err_msg=name)
  grad_fn = jax.jit(jax.grad(lambda z, p: M.trace_covariance_logm(z, p, method="taylor")))
  np.testing.assert_allclose(grad_fn(zs, ps), grad_fn(z, p), rtol=2e-5, atol=2e-6)


# ------------------------------------------------------------------ bad input ---------
class TestBadInput:

  def test_messages_name_argument_value_and_allowed(self):
    z = jnp.ones((4, 3))
    cases = [
        (lambda: M.cross_covariance(jnp.ones(5)), ["a", "(5,)", "(B, D)"]),
        (lambda: M.cross_covariance(jnp.ones((1, 3))), ["a", "(1, 3)", "at least 2"]),
        (lambda: M.cross_covariance(z, jnp.ones((5, 3))), ["same batch size", "(4, 3)",
                                                           "(5, 3)"]),
        (lambda: M.logm(jnp.ones((3, 4))), ["a", "square", "(3, 4)"]),
        (lambda: M.logm(jnp.eye(3), method="pade"), ["method", "'pade'", "eigh", "taylor"]),
        (lambda: M.logdet(jnp.eye(3), method="lu"), ["method", "'lu'", "cholesky"]),
        (lambda: M.gram_matrix(z, kernel="rbf"), ["kernel", "'rbf'", "gaussian"]),
        (lambda: M.covariance_power_traces(z, order=0), ["order", "positive", "0"]),
        (lambda: M.covariance_power_traces(z, order=2, side="left"), ["side", "'left'",
                                                                      "dual"]),
        (lambda: M.matrix_cross_entropy(jnp.eye(3), jnp.eye(4)), ["p and q", "(3, 3)",
                                                                  "(4, 4)"]),
        (lambda: M.hsic(jnp.eye(3), jnp.eye(4)), ["k1", "k2"]),
        (lambda: M.renyi_entropy(jnp.eye(3), -1.0), ["alpha", "positive", "-1.0"]),
        (lambda: M.total_coding_rate(z, mu=0.0), ["mu", "positive"]),
    ]
    for fn, fragments in cases:
      with pytest.raises(ValueError) as info:
        fn()
      for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_functions_are_jittable_and_finite():
  z = jnp.asarray(np.random.default_rng(21).normal(size=(16, 8)), jnp.float32)
  outs = {
      "cov": jax.jit(M.cross_covariance)(z),
      "traces": jax.jit(functools.partial(M.covariance_power_traces, order=4))(z),
      "tcr": jax.jit(M.total_coding_rate)(z),
      "erank": jax.jit(M.effective_rank)(z),
  }
  chex.assert_tree_all_finite(outs)
  chex.assert_shape(outs["cov"], (8, 8))
  chex.assert_shape(outs["traces"], (5,))
