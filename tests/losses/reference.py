"""Independent numpy implementations of docs/methods.md and the table of cases that
tests/losses/test_registry.py checks every objective against (imported as
``losses.reference``: conftest.py puts tests/ on the path).

Each reference below is written from that page's formula with dense numpy
matrices (no dual form, no traces of powers), so it checks the objectives' algebra too.
``CASES`` holds at least one row per registered objective (tests/test_completeness.py).
"""

import functools

import numpy as np

from mssl import losses


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
    # Plain MAE: no regulariser, a zero that keeps the masked-image pipeline uniform.
    "mae": (lambda z1, z2, p1, p2: losses.get("mae")(z1)[0],
            lambda z1, z2, p1, p2: 0.0),
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
