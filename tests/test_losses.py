"""Tests for mssl.losses against independent numpy implementations of docs/methods.md.

Each reference below is written from that page's formula with dense numpy
matrices (no dual form, no traces of powers), so it checks the objectives' algebra too.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tolerance
from mssl import losses
from mssl import matrix as M

P = jax.sharding.PartitionSpec


# ------------------------------------------------------------ numpy references ---------
def rn(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cn(x):
  return x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)


def centering(b):
  return np.eye(b) - np.ones((b, b)) / b


def np_cov(a, b):
  return rn(a).T @ centering(len(a)) @ rn(b) / len(a)


def np_taylor_log(q, order):
  x = q - np.eye(len(q))
  return sum((-1) ** (k + 1) / k * np.linalg.matrix_power(x, k) for k in range(1, order + 1))


def np_sym_log(q):
  """Exact logarithm of a symmetric positive-definite matrix (numpy eigh)."""
  w, u = np.linalg.eigh(0.5 * (q + q.T))
  return (u * np.log(w)) @ u.T


def np_log(q, order, exact):
  return np_sym_log(q) if exact else np_taylor_log(q, order)


def np_uniformity(p, z, lam, mu, order, exact=False):
  q = np_cov(p, z) + mu * np.eye(p.shape[1])
  if exact:
    return -lam * np.linalg.slogdet(q)[1]
  return -lam * np.trace(np_taylor_log(q, order))


def np_alignment(p, z, mu, order, exact=False):
  eye = np.eye(p.shape[1])
  return -np.trace((np_cov(p, p) + mu * eye) @ np_log(np_cov(z, z) + mu * eye, order, exact))


def np_matrix_ssl(z1, z2, p1, p2, lam=1.0, mu=1.0, gamma=1.0, order=4, exact=False):
  u = np_uniformity(p2, z1, lam, mu, order, exact) + np_uniformity(p1, z2, lam, mu, order,
                                                                   exact)
  a = np_alignment(p2, z1, mu, order, exact) + np_alignment(p1, z2, mu, order, exact)
  return 0.5 * (u + gamma * a)


def np_mec(z1, z2, p1, p2, lam_inv, order=4):
  b = len(z1)

  def tr_k(p, z):
    return np.trace(np_taylor_log(np.eye(b) + rn(p) @ rn(z).T / lam_inv, order))
  return -lam_inv * 0.5 * (tr_k(p1, z2) + tr_k(p2, z1)) / b


def np_hsic(k1, k2):
  j = centering(len(k1))
  return np.trace(k1 @ j @ k2 @ j) / len(k1) ** 2


def poly2_features(x, coef0):
  """Explicit feature map of (<x, y> + c)^2: [x (x) x, sqrt(2c) x, c]."""
  outer = np.einsum("bi,bj->bij", x, x).reshape(len(x), -1)
  return np.concatenate([outer, np.sqrt(2 * coef0) * x, np.full((len(x), 1), coef0)], 1)


def np_kernel_ssl_linear(z1, z2, p1, p2, lam=1.0, mu=1.0, gamma=1.0, w_hsic=0.003,
                         order=4, exact=False):
  """HSIC once with the uniformity and once with the gamma-weighted alignment."""
  def t(p, z):
    hsic = np_hsic(rn(p) @ rn(p).T, rn(z) @ rn(z).T)
    return (np_uniformity(p, z, lam, mu, order, exact)
            + gamma * np_alignment(p, z, mu, order, exact) - (1 + gamma) * w_hsic * hsic)
  return 0.5 * (t(p2, z1) + t(p1, z2))


def np_kernel_ssl_poly2(z1, z2, p1, p2, coef0=1.0, lam=1.0, gamma=1.0, w_hsic=0.003,
                        order=4, exact=False):
  """Primal computation in the explicit (finite) feature space of the degree-2 kernel."""
  def t(p, z):
    fp, fz = poly2_features(rn(p), coef0), poly2_features(rn(z), coef0)
    j, b = centering(len(p)), len(p)
    c_pz, c_pp, c_zz = fp.T @ j @ fz / b, fp.T @ j @ fp / b, fz.T @ j @ fz / b
    eye = np.eye(len(c_pz))
    if exact:
      u = -lam * np.linalg.slogdet(eye + c_pz)[1]
    else:
      u = -lam * np.trace(np_taylor_log(eye + c_pz, order))
    a = -np.trace((c_pp + eye) @ np_log(c_zz + eye, order, exact))
    hsic = np_hsic(fp @ fp.T, fz @ fz.T)
    return u + gamma * a - (1 + gamma) * w_hsic * hsic
  return 0.5 * (t(p2, z1) + t(p1, z2))


def np_kernel_ssl_gaussian(z1, z2, p1, p2, bandwidth, lam=1.0, gamma=1.0, w_hsic=0.003,
                           order=4):
  """The Gram-matrix formulas of docs/methods.md, written out with dense powers."""
  def gram(x, y):
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * bandwidth ** 2))

  def t(p, z):
    b, j = len(p), centering(len(p))
    pn, zn = rn(p), rn(z)
    g_zp = j @ gram(zn, pn) @ j / b
    g_zz = j @ gram(zn, zn) @ j / b
    g_pp = j @ gram(pn, pn) @ j / b
    coef = [(-1) ** (k + 1) / k for k in range(1, order + 1)]
    u = -lam * sum(c * np.trace(np.linalg.matrix_power(g_zp, k))
                   for k, c in zip(range(1, order + 1), coef))
    # tr(C_pp C_zz^k) = tr(Phi_p J Phi_p^T (Phi_z J Phi_z^T)^k) / B^(k+1), written through
    # the centred cross-Gram J K_pz J: tr(G_pz G_zz^(k-1) G_zp).
    g_pz = g_zp.T
    cross = [np.trace(g_pz @ np.linalg.matrix_power(g_zz, k - 1) @ g_zp)
             for k in range(1, order + 1)]
    own = [np.trace(np.linalg.matrix_power(g_zz, k)) for k in range(1, order + 1)]
    a = -sum(c * (x + y) for c, x, y in zip(coef, cross, own))
    del g_pp
    hsic = np_hsic(gram(pn, pn), gram(zn, zn))
    return u + gamma * a - (1 + gamma) * w_hsic * hsic
  return 0.5 * (t(p2, z1) + t(p1, z2))


def np_frossl(views, w=1.0, center=False):
  if center:
    views = [v - v.mean(0, keepdims=True) for v in views]
  views = [cn(v) for v in views]
  vnum, (b, d) = len(views), views[0].shape
  mean = sum(views) / vnum
  total = 0.0
  for v in views:
    k = v.T @ v if b > d else v @ v.T
    k = k / np.trace(k)
    total += np.log(np.sum(k ** 2)) + w * vnum * d * np.mean((v - mean) ** 2)
  return total


def np_simclr(z1, z2, tau):
  z = rn(np.concatenate([z1, z2]))
  n, b = len(z), len(z1)
  s = z @ z.T / tau
  total = 0.0
  for i in range(n):
    pos = (i + b) % n
    others = [s[i, j] for j in range(n) if j != i]
    total += -s[i, pos] + np.log(np.sum(np.exp(others)))
  return total / n


def np_byol(z1, z2, p1, p2):
  cos = lambda a, b: np.mean(np.sum(rn(a) * rn(b), 1))
  return (2 - 2 * cos(z1, p2)) + (2 - 2 * cos(z2, p1))


def np_simsiam(z1, z2, p1, p2):
  cos = lambda a, b: np.mean(np.sum(rn(a) * rn(b), 1))
  return -0.5 * cos(z1, p2) - 0.5 * cos(z2, p1)


def np_barlow(z1, z2, lambd=0.0051, scale=1.0):
  bn = lambda z: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
  c = bn(z1).T @ bn(z2) / len(z1)
  off = c - np.diag(np.diag(c))
  return scale * (np.sum((1 - np.diag(c)) ** 2) + lambd * np.sum(off ** 2))


def np_vicreg(z1, z2, sim=25.0, var=25.0, cov=1.0):
  d = z1.shape[1]
  loss = sim * np.mean((z1 - z2) ** 2)
  for z in (z1, z2):
    c = np.cov(z, rowvar=False)  # unbiased
    loss += var * np.mean(np.maximum(0, 1 - np.sqrt(np.diag(c) + 1e-4)))
    loss += cov * (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / d
  return loss


def np_spectral(z1, z2, mu=1.0):
  def ball(z):
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return z * np.minimum(1, np.sqrt(mu) / norm)
  z1, z2 = ball(z1), ball(z2)
  b = len(z1)
  attract = -2.0 / b * np.sum(z1 * z2)
  repel = sum((z1[i] @ z2[j]) ** 2 for i in range(b) for j in range(b) if i != j)
  return (attract + repel / (b * (b - 1))) / mu


def np_mmae(z, mu=3.0, center=False):
  zn = rn(z)
  if center:
    zn = zn - zn.mean(0)
  return -np.linalg.slogdet(np.eye(z.shape[1]) + mu / z.shape[1] * zn.T @ zn)[1]


def np_umae(z):
  return np.mean((rn(z) @ rn(z).T) ** 2)


# ------------------------------------------------------------ cases --------------------
# name -> (jax objective taking (z1, z2, p1, p2), numpy reference, symmetric under swap)
def _two(fn, **kw):
  return lambda z1, z2, p1, p2: fn(z1, z2, p1, p2, **kw)[0]


def _pair(fn, **kw):
  return lambda z1, z2, p1, p2: fn(z1, z2, **kw)[0]


CASES = {
    "matrix_ssl": (_two(losses.matrix_ssl), np_matrix_ssl),
    "matrix_ssl_mu_gamma": (_two(losses.matrix_ssl, lam=0.5, mu=1.5, gamma=0.3, order=3),
                            functools.partial(np_matrix_ssl, lam=0.5, mu=1.5, gamma=0.3,
                                              order=3)),
    "matrix_ssl_exact": (_two(losses.matrix_ssl, logm="exact"),
                         functools.partial(np_matrix_ssl, exact=True)),
    "matrix_ssl_exact_mu": (_two(losses.matrix_ssl, logm="exact", mu=0.7),
                            functools.partial(np_matrix_ssl, exact=True, mu=0.7)),
    "mec": (_two(losses.mec, lam_inv=0.75), functools.partial(np_mec, lam_inv=0.75)),
    "kernel_ssl_linear": (_two(losses.kernel_ssl), np_kernel_ssl_linear),
    "kernel_ssl_linear_exact": (_two(losses.kernel_ssl, logm="exact", mu=1.3),
                                functools.partial(np_kernel_ssl_linear, exact=True,
                                                  mu=1.3)),
    "kernel_ssl_poly": (_two(losses.kernel_ssl, kernel="polynomial", degree=2, coef0=0.5,
                             w_hsic=0.01),
                        functools.partial(np_kernel_ssl_poly2, coef0=0.5, w_hsic=0.01)),
    "kernel_ssl_poly_exact": (_two(losses.kernel_ssl, kernel="polynomial", degree=2,
                                   coef0=0.5, logm="exact"),
                              functools.partial(np_kernel_ssl_poly2, coef0=0.5, exact=True)),
    "kernel_ssl_gaussian": (_two(losses.kernel_ssl, kernel="gaussian", bandwidth=0.8),
                            functools.partial(np_kernel_ssl_gaussian, bandwidth=0.8)),
    "frossl": (lambda z1, z2, p1, p2: losses.frossl([z1, z2])[0],
               lambda z1, z2, p1, p2: np_frossl([z1, z2])),
    "frossl_4views_centered": (
        lambda z1, z2, p1, p2: losses.frossl([z1, z2, p1, p2], invariance_weight=1.4,
                                             center=True)[0],
        lambda z1, z2, p1, p2: np_frossl([z1, z2, p1, p2], w=1.4, center=True)),
    "simclr": (_pair(losses.simclr, temperature=0.2),
               lambda z1, z2, p1, p2: np_simclr(z1, z2, 0.2)),
    "byol": (_two(losses.byol), np_byol),
    "simsiam": (_two(losses.simsiam), np_simsiam),
    "barlow_twins": (_pair(losses.barlow_twins, lambd=0.0051, scale=0.1),
                     lambda z1, z2, p1, p2: np_barlow(z1, z2, scale=0.1)),
    "vicreg": (_pair(losses.vicreg, sim_weight=25.0, var_weight=25.0, cov_weight=1.0),
               lambda z1, z2, p1, p2: np_vicreg(z1, z2)),
    "spectral_contrastive": (_pair(losses.spectral_contrastive, mu=1.0),
                             lambda z1, z2, p1, p2: np_spectral(z1, z2)),
    "spectral_contrastive_mu": (_pair(losses.spectral_contrastive, mu=0.5),
                                lambda z1, z2, p1, p2: np_spectral(z1, z2, mu=0.5)),
    "mmae": (lambda z1, z2, p1, p2: losses.mmae_regularizer(z1),
             lambda z1, z2, p1, p2: np_mmae(z1)),
    "mmae_centered": (lambda z1, z2, p1, p2: losses.mmae_regularizer(z1, mu=2.0,
                                                                     center=True),
                      lambda z1, z2, p1, p2: np_mmae(z1, 2.0, center=True)),
    "umae": (lambda z1, z2, p1, p2: losses.umae_regularizer(z1),
             lambda z1, z2, p1, p2: np_umae(z1)),
}


def make_batch(kind, seed=0):
  """Four (B, D) arrays: z1, z2 (online) and p1, p2 (target)."""
  rng = np.random.default_rng(seed)
  shapes = {"narrow": (6, 16), "wide": (24, 5), "correlated": (12, 8),
            "rank_deficient": (16, 8)}
  b, d = shapes[kind]
  if kind == "rank_deficient":
    basis = rng.normal(size=(3, d))
    base = [rng.normal(size=(b, 3)) @ basis for _ in range(4)]
  else:
    base = [rng.normal(size=(b, d)) for _ in range(4)]
  if kind == "correlated":
    shared = rng.normal(size=(b, d))
    base = [shared + 0.3 * x for x in base]
  return [x + 0.2 for x in base]  # off-centre, as real embeddings are


KINDS = ("narrow", "wide", "correlated", "rank_deficient")


# ------------------------------------------------------------ golden values ------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference(name, dtype):
  fn, ref = CASES[name]
  jitted = jax.jit(fn)
  for kind in KINDS:
    arrays = make_batch(kind)
    want = ref(*arrays)
    got = jitted(*(jnp.asarray(a, dtype) for a in arrays))
    assert got.dtype == dtype
    rtol = tolerance(dtype, 1e-9, 1e-4)
    assert abs(float(got) - want) <= rtol * max(abs(want), 1.0), (kind, float(got), want)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_numpy_reference(name, x64):
  fn, ref = CASES[name]
  arrays = make_batch("narrow", seed=1)
  arrays = [a[:5, :6] for a in arrays]  # small: the reference is differentiated by FD
  grad = jax.grad(fn, argnums=(0, 1))(*(jnp.asarray(a) for a in arrays))
  eps = 1e-4
  for arg, g in enumerate(grad):
    fd = np.zeros_like(arrays[arg])
    for idx in np.ndindex(fd.shape):
      vals = []
      for step in (2, 1, -1, -2):
        shifted = [a.copy() for a in arrays]
        shifted[arg][idx] += step * eps
        vals.append(ref(*shifted))
      fd[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * eps)
    scale = max(np.linalg.norm(fd), 1e-3)
    assert np.linalg.norm(np.asarray(g) - fd) <= 1e-6 * scale, (arg, name)


# ------------------------------------------------------------ invariances --------------
SYMMETRIC = sorted(set(CASES) - {"mmae", "mmae_centered", "umae"})


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_permutation_invariance(name, x64):
  fn, _ = CASES[name]
  arrays = [jnp.asarray(a) for a in make_batch("correlated", seed=2)]
  perm = np.random.default_rng(3).permutation(arrays[0].shape[0])
  base = float(fn(*arrays))
  permuted = float(fn(*(a[perm] for a in arrays)))
  assert permuted == pytest.approx(base, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_view_swap_symmetry(name, x64):
  fn, _ = CASES[name]
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("correlated", seed=4)]
  assert float(fn(z2, z1, p2, p1)) == pytest.approx(float(fn(z1, z2, p1, p2)), rel=1e-10,
                                                    abs=1e-12)


def test_frossl_is_symmetric_in_any_number_of_views(x64):
  views = [jnp.asarray(a) for a in make_batch("narrow", seed=5)]
  base = float(losses.frossl(views)[0])
  assert float(losses.frossl(views[::-1])[0]) == pytest.approx(base, rel=1e-12)
  eight = views + [v * 1.1 + 0.05 for v in views]
  loss, aux = losses.frossl(eight)
  assert {f"frobenius_v{i}" for i in range(8)} <= set(aux)
  assert float(loss) == pytest.approx(float(aux["frobenius"] + aux["invariance"]),
                                      rel=1e-12)


# ------------------------------------------------------------ stop-gradients -----------
TEACHER_OBJECTIVES = {
    "matrix_ssl": dict(), "matrix_ssl_exact": dict(logm="exact"),
    "mec": dict(lam_inv=2.0), "kernel_ssl": dict(kernel="gaussian"),
    "kernel_ssl_poly_exact": dict(kernel="polynomial", logm="exact"),
    "byol": dict(), "simsiam": dict(),
}


@pytest.mark.parametrize("name", sorted(TEACHER_OBJECTIVES))
def test_no_gradient_reaches_the_target_branch(name):
  fn = losses.get(name.split("_exact")[0].replace("_poly", ""))
  kw = TEACHER_OBJECTIVES[name]
  arrays = [jnp.asarray(a, jnp.float32) for a in make_batch("narrow", seed=6)]
  loss = lambda *a: fn(*a, **kw)[0]
  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*arrays)
  assert np.any(np.asarray(grads[0]) != 0) and np.any(np.asarray(grads[1]) != 0)
  assert np.all(np.asarray(grads[2]) == 0) and np.all(np.asarray(grads[3]) == 0)


def test_building_blocks_stop_the_target_gradient():
  p, z = (jnp.asarray(a, jnp.float32) for a in make_batch("narrow")[:2])
  for fn in (lambda p, z: losses.matrix_uniformity(p, z, lam=1.0, mu=1.0),
             lambda p, z: losses.matrix_alignment(p, z, mu=1.0),
             lambda p, z: losses.mec_trace(p, z, lam_inv=1.0)):
    gp, gz = jax.grad(fn, argnums=(0, 1))(p, z)
    assert np.all(np.asarray(gp) == 0) and np.linalg.norm(np.asarray(gz)) > 0


# ------------------------------------------------------------ learning signal ----------
# Objectives with a collapse-avoiding term. BYOL and SimSiam have none in the loss (they
# rely on the predictor / EMA asymmetry), so only their loss decrease is checked.
ANTI_COLLAPSE = {
    "matrix_ssl": dict(), "mec": dict(lam_inv=1.0), "kernel_ssl": dict(kernel="gaussian"),
    "frossl": dict(), "simclr": dict(temperature=0.2), "barlow_twins": dict(),
    "vicreg": dict(), "spectral_contrastive": dict(), "mmae": dict(), "umae": dict(),
}


def _as_objective(name, kw):
  obj = losses.spec(name)
  if obj.inputs == "two_branch":
    return lambda x1, x2: obj.fn(x1, x2, x1, x2, **kw)[0]
  if obj.inputs == "pair":
    return lambda x1, x2: obj.fn(x1, x2, **kw)[0]
  if obj.inputs == "multi_view":
    return lambda x1, x2: obj.fn([x1, x2], **kw)[0]
  return lambda x1, x2: obj.fn(x1, **kw)[0] + obj.fn(x2, **kw)[0]


def _optimise(loss_fn, x, steps=60, lr=0.05):
  opt = optax.adam(lr)
  state = opt.init(x)

  @jax.jit
  def step(x, state):
    value, grad = jax.value_and_grad(lambda x: loss_fn(*x))(x)
    updates, state = opt.update(grad, state)
    return optax.apply_updates(x, updates), state, value
  first = None
  for _ in range(steps):
    x, state, value = step(x, state)
    first = value if first is None else first
  return x, float(first), float(loss_fn(*x))


@pytest.mark.parametrize("name", sorted(ANTI_COLLAPSE) + ["byol", "simsiam"])
def test_gradient_steps_lower_the_loss(name):
  kw = ANTI_COLLAPSE.get(name, {})
  rng = np.random.default_rng(7)
  base = rng.normal(size=(32, 16))
  x = tuple(jnp.asarray(base + 0.5 * rng.normal(size=base.shape), jnp.float32)
            for _ in range(2))
  _, first, last = _optimise(_as_objective(name, kw), x, steps=15, lr=0.01)
  assert last < first - 1e-4 * max(1.0, abs(first)), (first, last)


@pytest.mark.parametrize("name", sorted(ANTI_COLLAPSE))
def test_collapsed_embeddings_are_not_a_minimum(name):
  """Start near collapse (every row almost the same vector): the objective spreads them."""
  rng = np.random.default_rng(8)
  const = rng.normal(size=(1, 16))
  x = tuple(jnp.asarray(const + 0.01 * rng.normal(size=(32, 16)), jnp.float32)
            for _ in range(2))
  start_rank = float(M.effective_rank(M.batch_center(x[0])))
  x, first, last = _optimise(_as_objective(name, ANTI_COLLAPSE[name]), x, steps=150)
  end_rank = float(M.effective_rank(M.batch_center(x[0])))
  assert last < first
  # The centred batch starts isotropic-but-tiny; what matters is that the *uncentred*
  # embeddings leave the constant vector: their effective rank rises well above 1.
  uncentred = float(M.effective_rank(x[0]))
  assert uncentred > 4.0, (name, uncentred, start_rank, end_rank)


# ------------------------------------------------------------ sharding -----------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_equals_unsharded(name, data_mesh):
  fn, _ = CASES[name]
  arrays = [np.asarray(a, np.float32) for a in make_batch("correlated", seed=9)]
  arrays = [np.concatenate([a, a[::-1] * 0.9 + 0.1], 0)[:16] for a in arrays]  # B = 16
  rows = jax.sharding.NamedSharding(data_mesh, P("data"))
  sharded = [jax.device_put(a, rows) for a in arrays]
  grad_fn = jax.jit(jax.value_and_grad(fn))
  want_v, want_g = grad_fn(*arrays)
  got_v, got_g = grad_fn(*sharded)
  np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ registry and errors ------
def test_registry_names_and_entries():
  expected = {"matrix_ssl", "mec", "kernel_ssl", "mmae", "umae", "mae", "frossl", "simclr",
              "spectral_contrastive", "barlow_twins", "vicreg", "byol", "simsiam"}
  assert expected <= set(losses.names())
  assert losses.get("matrix_ssl") is losses.matrix_ssl
  assert losses.spec("byol").uses_teacher and not losses.spec("simsiam").uses_teacher
  assert {n: losses.spec(n).teacher for n in ("matrix_ssl", "mec", "kernel_ssl", "byol",
                                              "simsiam", "simclr", "frossl", "mmae")} == \
      dict(matrix_ssl="ema", mec="ema", kernel_ssl="ema", byol="ema", simsiam="online",
           simclr="none", frossl="none", mmae="none")
  with pytest.raises(ValueError, match="goes with inputs='two_branch'"):
    losses.register("bad_teacher", inputs="pair", teacher="ema")
  assert losses.spec("frossl").inputs == "multi_view"
  value, aux = losses.get("mae")(jnp.ones((4, 3)))
  assert float(value) == 0.0 and aux == {}


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


# The official M-MAE / U-MAE regularisers (yifanzhang-pro/M-MAE and zhangq327/U-MAE,
# loss_func.py) on the gathered batch, transcribed in jax.numpy.
def official_tcr_loss(z, mu=3.0):
  f = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  sim = f.T @ f
  return -jnp.linalg.slogdet(jnp.eye(sim.shape[0]) + mu / sim.shape[0] * sim)[1]


def official_square_loss(z):
  f = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  return jnp.mean((f @ f.T) ** 2)


MASKED_REGULARIZERS = {"mmae": (dict(mu=3.0), official_tcr_loss),
                       "umae": (dict(), official_square_loss)}


def _masked_image_problem(seed=13, batch=16, features=5, dim=6, patches=4, pixels=3):
  """A tiny linear "encoder" (CLS = x A) and "decoder" (pred = x Bm), fixed targets and a
  mask hiding 3 of 4 patches in every image (MAE's fixed count per image)."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(batch, features)) + 0.3)
  params = {"enc": jnp.asarray(rng.normal(size=(features, dim))),
            "dec": jnp.asarray(rng.normal(size=(features, patches * pixels)))}
  target = jnp.asarray(rng.normal(size=(batch, patches, pixels)))
  mask = np.ones((batch, patches))
  mask[np.arange(batch), rng.integers(0, patches, size=batch)] = 0.0
  shape = (patches, pixels)
  return x, params, target, jnp.asarray(mask), shape


def _official_ddp_gradient(params, x, target, mask, shape, world, lam, official_reg):
  """The official runs on ``world`` GPUs: rank r sees its shard; the regulariser is
  computed on the all-gathered CLS features, whose backward (GatherLayer) keeps only
  rank r's rows (the other ranks' rows are constants here); DDP averages the ranks'
  parameter gradients."""
  batch = x.shape[0]
  rows = batch // world
  grads = []
  for rank in range(world):
    mine = slice(rank * rows, (rank + 1) * rows)
    own = np.zeros((batch, 1), bool)
    own[mine] = True

    def rank_loss(params):
      z = x @ params["enc"]
      gathered = jnp.where(own, z, jax.lax.stop_gradient(z))
      pred = (x[mine] @ params["dec"]).reshape(rows, *shape)
      per_patch = jnp.mean((pred - target[mine]) ** 2, axis=-1)
      recon = jnp.sum(per_patch * mask[mine]) / jnp.sum(mask[mine])
      return recon + lam * official_reg(gathered)
    grads.append(jax.grad(rank_loss)(params))
  return jax.tree_util.tree_map(lambda *g: sum(g) / world, *grads)


def _mssl_masked_loss(params, x, target, mask, shape, regularizer, lam, **kw):
  pred = (x @ params["dec"]).reshape(x.shape[0], *shape)
  return losses.masked_image_objective(pred, target, mask, x @ params["enc"],
                                       regularizer=regularizer, lam=lam, **kw)[0]


def _tree_rel_err(a, b):
  num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                         jax.tree_util.tree_leaves(b)))
  den = sum(float(jnp.sum(v ** 2)) for v in jax.tree_util.tree_leaves(b))
  return (num / den) ** 0.5


@pytest.mark.parametrize("regularizer", sorted(MASKED_REGULARIZERS))
def test_reference_world_size_reproduces_the_official_ddp_gradient(regularizer, x64):
  reg_kw, official_reg = MASKED_REGULARIZERS[regularizer]
  x, params, target, mask, shape = _masked_image_problem()
  lam = 0.5  # large enough that the regulariser's share of the gradient is visible
  def exact_objective(prm):  # the whole batch's L_MAE + lam * reg, differentiated exactly
    pred = (x @ prm["dec"]).reshape(x.shape[0], *shape)
    per_patch = jnp.mean((pred - target) ** 2, axis=-1)
    return (jnp.sum(per_patch * mask) / jnp.sum(mask)
            + lam * official_reg(x @ prm["enc"]))
  exact = jax.grad(exact_objective)(params)
  # W = 1: mssl's default is the exact gradient, and so is the official single-GPU run.
  base_value, default = jax.value_and_grad(_mssl_masked_loss)(
      params, x, target, mask, shape, regularizer, lam, **reg_kw)
  assert _tree_rel_err(default, exact) < 1e-12
  assert _tree_rel_err(_official_ddp_gradient(params, x, target, mask, shape, 1, lam,
                                              official_reg), exact) < 1e-12
  for world in (2, 4, 8):
    official = _official_ddp_gradient(params, x, target, mask, shape, world, lam,
                                      official_reg)
    loss = functools.partial(_mssl_masked_loss, x=x, target=target, mask=mask, shape=shape,
                             regularizer=regularizer, lam=lam,
                             reference_world_size=world, **reg_kw)
    value, got = jax.value_and_grad(loss)(params)
    assert float(value) == float(base_value)  # the loss value does not change
    assert _tree_rel_err(got, official) < 1e-12, world
    assert _tree_rel_err(exact, official) > 1e-3, world  # the setting matters
    # The same parameter update (plain SGD step) as the official run.
    step = lambda prm, g: jax.tree_util.tree_map(lambda p_, g_: p_ - 0.1 * g_, prm, g)
    assert _tree_rel_err(step(params, got), step(params, official)) < 1e-12


def test_reference_world_size_is_checked():
  z = jnp.ones((4, 3))
  tokens, mask = jnp.ones((4, 2, 5)), jnp.ones((4, 2))
  for bad in (0, 1.5, True):
    with pytest.raises(ValueError, match="reference_world_size"):
      losses.masked_image_objective(tokens, tokens, mask, z, reference_world_size=bad)


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
