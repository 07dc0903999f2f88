"""The matrix-information toolkit: covariances, kernels, matrix logarithms and entropies.

Every function here is a pure, ``jit``-able, differentiable ``jnp`` function of arrays.
Batches are ``(B, D)`` arrays whose rows are samples. Definitions follow
``docs/methods.md`` ("Notation") and the papers it cites:

* ``rn(x)``: row-wise L2 normalisation ``x / max(||x||, 1e-12)``; ``J = I_B - 11^T / B``.
* cross-covariance ``C(a, b) = (1/B) rn(a)^T J rn(b)``.
* matrix entropy (paper form) ``ME(P) = -tr(P log P) + tr(P)``,
  matrix cross-entropy ``MCE(P, Q) = tr(-P log Q + Q)``,
  matrix KL ``MKL(P || Q) = tr(P log P - P log Q - P + Q)``
  (Zhang et al., "Matrix Information Theory for Self-Supervised Learning", ICML 2024).
* matrix Renyi-alpha entropy ``log(tr(rho^alpha)) / (1 - alpha)`` and the Hadamard-product
  joint entropy / mutual information of Gram matrices (Sanchez Giraldo, Rao & Principe,
  "Measures of entropy from data using infinitely divisible kernels", IEEE T-IT 2015).
* total coding rate ``TCR_mu(Z) = logdet(I_D + (mu/D) rn(Z)^T rn(Z))`` (Ma et al. 2007;
  Yu et al., MCR^2, 2020), effective rank (Roy & Vetterli 2007; Garrido et al., RankMe 2023).

Three computation paths:

1. ``"eigh"``: exact, for symmetric PSD input. Eigenvalues are floored at ``floor``
   (default: the dtype's machine epsilon) before the function is applied. The backward
   pass is a custom JVP built on divided differences (the Daleckii-Krein / Loewner
   formula ``df(A)[E] = U (L o U^T E U) U^T`` with ``L_ij = (f(l_i) - f(l_j)) / (l_i - l_j)``
   and ``L_ii = f'(l_i)``), evaluated in closed forms that stay accurate at ties. Plain
   autodiff through ``eigh`` divides by ``l_i - l_j`` and is wrong or NaN at repeated
   eigenvalues, which a rank-deficient covariance plus ``mu I`` always has.
2. ``"taylor"``: the matmul-only series ``TaylorLog_K(Q) = sum_{k<=K} (-1)^{k+1} (Q-I)^k / k``
   (valid when the spectral radius of ``Q - I`` is below 1). Quantities that only need a
   trace use traces of powers (:func:`power_traces`), which needs about half the matmuls.
3. ``"cholesky"`` / ``"slogdet"``: log-determinants; ``tr log A = log det A`` also gives the
   exact trace of the logarithm of a non-symmetric ``A``.

**Dual form.** ``C(a, b)`` is ``A^T B'`` with ``A, B'`` of shape ``(B, D)``: its non-zero
spectrum equals that of the ``B x B`` matrix ``B' A^T``, so traces of powers
(``tr((A^T B')^k) = tr((B' A^T)^k)``) and log-determinants (Sylvester:
``det(I_D + A^T B') = det(I_B + B' A^T)``) can be taken on whichever side is smaller.
``side="auto"`` picks by shape; ``"primal"`` (D x D) and ``"dual"`` (B x B) force one.

Matrix products run at ``precision=HIGHEST``: the default float32 matmul is TF32 on GPU and
bfloat16 passes on TPU, which is too coarse for logarithms and log-determinants.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

HIGHEST = jax.lax.Precision.HIGHEST
LOGM_METHODS = ("eigh", "taylor")
LOGDET_METHODS = ("cholesky", "slogdet", "eigh")
KERNELS = ("linear", "gaussian", "polynomial")
SIDES = ("auto", "primal", "dual")
NORM_EPS = 1e-12


# --------------------------------------------------------------------------------------
# Input checks. They run at trace time on static shapes and name the offending argument.
# --------------------------------------------------------------------------------------
def _check_rank(x, rank: int, name: str, what: str) -> None:
  ndim = getattr(x, "ndim", None)
  if ndim != rank:
    shape = getattr(x, "shape", type(x).__name__)
    raise ValueError(f"{name} must be {what} (rank {rank}); got shape {shape}.")


def check_batch(x, name: str = "x") -> None:
  """Raises ValueError unless ``x`` is a ``(B, D)`` batch with B >= 2 rows."""
  _check_rank(x, 2, name, "a batch of shape (B, D)")
  if x.shape[0] < 2:
    raise ValueError(
        f"{name} must hold at least 2 samples (rows); got shape {x.shape}. "
        "Batch statistics (centring, covariances) are undefined for one sample.")


def check_same_batch(a, b, names: tuple[str, str] = ("a", "b")) -> None:
  """Raises ValueError unless two batches have the same number of rows."""
  if a.shape[0] != b.shape[0]:
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same batch size; got "
        f"{names[0]}.shape={a.shape} and {names[1]}.shape={b.shape}.")


def check_square(x, name: str = "a") -> None:
  """Raises ValueError unless ``x`` is a square matrix."""
  _check_rank(x, 2, name, "a square matrix")
  if x.shape[0] != x.shape[1]:
    raise ValueError(f"{name} must be a square matrix; got shape {x.shape}.")


def check_choice(value, allowed: Sequence[str], name: str) -> None:
  """Raises ValueError unless ``value`` is one of ``allowed``."""
  if value not in allowed:
    raise ValueError(f"{name} must be one of {tuple(allowed)}; got {value!r}.")


def check_order(order, name: str = "order") -> None:
  if not isinstance(order, int) or isinstance(order, bool) or order < 1:
    raise ValueError(f"{name} must be a positive integer; got {order!r}.")


def _mm(a: Array, b: Array) -> Array:
  return jnp.matmul(a, b, precision=HIGHEST)


def _trace_of_product(a: Array, b: Array) -> Array:
  """``tr(a @ b)`` without forming the product: ``sum(a * b^T)``."""
  return jnp.sum(a * b.T)


def _eye_like(a: Array) -> Array:
  return jnp.eye(a.shape[-1], dtype=a.dtype)


def _resolve_side(side: str, batch: int, dim: int) -> str:
  check_choice(side, SIDES, "side")
  if side == "auto":
    return "dual" if batch < dim else "primal"
  return side


# --------------------------------------------------------------------------------------
# Normalisation, centring, covariances.
# --------------------------------------------------------------------------------------
def row_normalize(x: Array, eps: float = NORM_EPS) -> Array:
  """``rn(x)``: each row divided by ``max(||row||_2, eps)``."""
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.maximum(norm, eps)


def col_normalize(x: Array, eps: float = NORM_EPS) -> Array:
  """``cn(x)``: each column divided by ``max(||column||_2, eps)``."""
  norm = jnp.linalg.norm(x, axis=-2, keepdims=True)
  return x / jnp.maximum(norm, eps)


def batch_center(x: Array) -> Array:
  """``J x``: subtracts the batch mean (over rows) from every row."""
  return x - jnp.mean(x, axis=0, keepdims=True)


def covariance_factor(x: Array, *, center: bool = True, normalize: bool = True) -> Array:
  """``F = J rn(x) / sqrt(B)``, so that ``C(a, b) = F_a^T F_b`` (``J`` idempotent)."""
  check_batch(x, "x")
  if normalize:
    x = row_normalize(x)
  if center:
    x = batch_center(x)
  return x / jnp.sqrt(jnp.asarray(x.shape[0], x.dtype))


def cross_covariance(a: Array, b: Optional[Array] = None, *, center: bool = True,
                     normalize: bool = True) -> Array:
  """Cross-covariance ``C(a, b) = (1/B) rn(a)^T J rn(b)`` of shape ``(D_a, D_b)``.

  ``b=None`` gives the auto-covariance ``C(a, a)``. ``center=False`` drops ``J`` and
  ``normalize=False`` drops ``rn``. Not symmetric when ``a != b``.
  """
  check_batch(a, "a")
  if b is not None:
    check_batch(b, "b")
    check_same_batch(a, b)
  fa = covariance_factor(a, center=center, normalize=normalize)
  fb = fa if b is None else covariance_factor(b, center=center, normalize=normalize)
  return _mm(fa.T, fb)


# --------------------------------------------------------------------------------------
# Kernels and HSIC.
# --------------------------------------------------------------------------------------
def _squared_distances(x: Array, y: Array) -> Array:
  sq = (jnp.sum(x * x, axis=-1)[:, None] + jnp.sum(y * y, axis=-1)[None, :]
        - 2.0 * _mm(x, y.T))
  return jnp.maximum(sq, 0.0)


def median_bandwidth(x: Array, y: Optional[Array] = None) -> Array:
  """Median heuristic: the median pairwise distance (a constant: no gradient flows)."""
  y = x if y is None else y
  dist = jnp.sqrt(_squared_distances(x, y) + 1e-12)
  return jax.lax.stop_gradient(jnp.maximum(jnp.median(dist), 1e-6))


def gram_matrix(x: Array, y: Optional[Array] = None, *, kernel: str = "linear",
                bandwidth: Optional[float] = None, degree: int = 2,
                coef0: float = 1.0) -> Array:
  """Kernel Gram matrix ``K[i, j] = k(x_i, y_j)`` (``y=None``: ``y = x``).

  * ``"linear"``: ``<x, y>``
  * ``"gaussian"``: ``exp(-||x - y||^2 / (2 sigma^2))``, ``sigma = bandwidth``, or the
    median pairwise distance when ``bandwidth`` is None
  * ``"polynomial"``: ``(<x, y> + coef0)^degree``
  """
  check_choice(kernel, KERNELS, "kernel")
  _check_rank(x, 2, "x", "a batch of shape (B, D)")
  if y is not None:
    _check_rank(y, 2, "y", "a batch of shape (B, D)")
    if y.shape[1] != x.shape[1]:
      raise ValueError(f"x and y must have the same width; got x.shape={x.shape}, "
                       f"y.shape={y.shape}.")
  y = x if y is None else y
  if kernel == "linear":
    return _mm(x, y.T)
  if kernel == "polynomial":
    return (_mm(x, y.T) + coef0) ** degree
  if isinstance(bandwidth, (int, float)) and not bandwidth > 0:
    raise ValueError(f"bandwidth must be positive or None; got {bandwidth!r}.")
  sigma = median_bandwidth(x, y) if bandwidth is None else bandwidth
  return jnp.exp(-_squared_distances(x, y) / (2.0 * sigma ** 2))


def centered_gram(k: Array) -> Array:
  """``J K J``: its non-zero spectrum is that of the RKHS covariance operator (x B)."""
  check_square(k, "k")
  k = k - jnp.mean(k, axis=0, keepdims=True)
  return k - jnp.mean(k, axis=1, keepdims=True)


def hsic(k1: Array, k2: Array) -> Array:
  """Biased HSIC of two Gram matrices: ``tr(K1 J K2 J) / B^2`` (Gretton et al. 2005)."""
  check_square(k1, "k1")
  check_square(k2, "k2")
  check_same_batch(k1, k2, ("k1", "k2"))
  n = k1.shape[0]
  return _trace_of_product(centered_gram(k1), centered_gram(k2)) / n ** 2


# --------------------------------------------------------------------------------------
# Spectral functions of symmetric matrices with a tie-safe custom derivative.
# --------------------------------------------------------------------------------------
# Each entry: f, f' and a divided difference (f(x) - f(y)) / (x - y) written so that it
# is accurate for x close to y (no cancellation), for x, y >= the floor (> 0).
def _dd_log(x, y):
  lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
  t = (hi - lo) / lo  # exact when hi and lo are within a factor 2 (Sterbenz)
  t_safe = jnp.where(t == 0, 1.0, t)
  return jnp.where(t == 0, 1.0, jnp.log1p(t_safe) / t_safe) / lo


def _dd_xlogx(x, y):
  # (h log h - l log l) / (h - l) = log h + l (log h - log l) / (h - l)
  lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
  return jnp.log(hi) + lo * _dd_log(hi, lo)


def _dd_power(alpha):
  def dd(x, y):
    lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
    t = (hi - lo) / lo
    t_safe = jnp.where(t == 0, 1.0, t)
    ratio = jnp.where(t == 0, alpha, jnp.expm1(alpha * jnp.log1p(t_safe)) / t_safe)
    return lo ** (alpha - 1) * ratio
  return dd


_SERIES_RADIUS = 0.1  # below it, 16 series terms are exact to 1e-16 and avoid cancellation


def _log1p_over_x(x):
  """``log(1 + x) / x = sum_n (-1)^n x^n / (n + 1)``, 1 at x = 0."""
  small = jnp.abs(x) < _SERIES_RADIUS
  x_safe = jnp.where(small, 1.0, x)
  series = sum((-1.0) ** n * x ** n / (n + 1) for n in range(16))
  return jnp.where(small, series, jnp.log1p(x_safe) / x_safe)


def _d_log1p_over_x(x):
  """Derivative of ``log(1 + x) / x``: ``(x / (1 + x) - log(1 + x)) / x^2``."""
  small = jnp.abs(x) < _SERIES_RADIUS
  x_safe = jnp.where(small, 1.0, x)
  series = sum((-1.0) ** n * n * x ** (n - 1) / (n + 1) for n in range(1, 17))
  exact = (x_safe / (1 + x_safe) - jnp.log1p(x_safe)) / x_safe ** 2
  return jnp.where(small, series, exact)


def _dd_generic(f, df):
  """Divided difference with a midpoint-derivative fallback for near-ties.

  Within a relative gap of sqrt(eps) the midpoint derivative has error O(gap^2) = O(eps);
  outside it the direct quotient loses at most sqrt(eps) to cancellation.
  """
  def dd(x, y):
    eps = jnp.finfo(jnp.result_type(x)).eps
    gap = x - y
    close = jnp.abs(gap) <= jnp.sqrt(eps) * jnp.maximum(1.0, jnp.maximum(jnp.abs(x),
                                                                         jnp.abs(y)))
    gap_safe = jnp.where(close, 1.0, gap)
    return jnp.where(close, df(0.5 * (x + y)), (f(x) - f(y)) / gap_safe)
  return dd


def _spectral_table(name: str, param: float):
  """(f, f', divided difference) for the spectral functions the toolkit uses."""
  if name == "log":
    return jnp.log, lambda x: 1.0 / x, _dd_log
  if name == "xlogx":
    return (lambda x: x * jnp.log(x)), (lambda x: jnp.log(x) + 1.0), _dd_xlogx
  if name == "power":
    return (lambda x: x ** param), (lambda x: param * x ** (param - 1)), _dd_power(param)
  if name == "log1p_over_x":
    return _log1p_over_x, _d_log1p_over_x, _dd_generic(_log1p_over_x, _d_log1p_over_x)
  raise ValueError(f"unknown spectral function {name!r}")


def _default_floor(dtype, floor: Optional[float]) -> float:
  if floor is not None:
    return float(floor)
  return float(jnp.finfo(dtype).eps)


def _floored(w: Array, floor: Optional[float]) -> Array:
  """Eigenvalues clamped at the floor (no floor: the function is defined everywhere)."""
  return w if floor is None else jnp.maximum(w, floor)


def _loewner_matrix(w: Array, name: str, param: float, floor: Optional[float]) -> Array:
  """Divided differences of ``g = f(max(., floor))`` at the eigenvalues ``w``."""
  _, df, dd = _spectral_table(name, param)
  x = _floored(w, floor)
  xi, xj = x[:, None], x[None, :]
  wi, wj = w[:, None], w[None, :]
  inner = dd(xi, xj)
  if floor is None:
    return inner
  # Chain rule through the clamp: the quotient of g uses the unclamped gap.
  gap = wi - wj
  gap_safe = jnp.where(gap == 0, 1.0, gap)
  above = (wi > floor).astype(w.dtype)
  ratio = jnp.where(gap == 0, above, (xi - xj) / gap_safe)
  return inner * ratio


def _symmetrize(a: Array) -> Array:
  return 0.5 * (a + a.T)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _eigh_function(a: Array, name: str, param: float, floor: Optional[float]) -> Array:
  """``U g(L) U^T`` for symmetric ``a = U L U^T`` (``g = f`` after the floor)."""
  f, _, _ = _spectral_table(name, param)
  w, u = jnp.linalg.eigh(_symmetrize(a))
  return _mm(u * f(_floored(w, floor))[None, :], u.T)


@_eigh_function.defjvp
def _eigh_function_jvp(name, param, floor, primals, tangents):
  (a,), (da,) = primals, tangents
  f, _, _ = _spectral_table(name, param)
  w, u = jnp.linalg.eigh(_symmetrize(a))
  out = _mm(u * f(_floored(w, floor))[None, :], u.T)
  rotated = _mm(u.T, _mm(_symmetrize(da), u))
  d_out = _mm(u, _mm(_loewner_matrix(w, name, param, floor) * rotated, u.T))
  return out, d_out


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _eigh_trace_function(a: Array, name: str, param: float,
                         floor: Optional[float]) -> Array:
  """``tr g(a) = sum_i g(l_i)``; derivative ``U diag(g'(l)) U^T`` (no ties involved)."""
  f, _, _ = _spectral_table(name, param)
  w = jnp.linalg.eigvalsh(_symmetrize(a))
  return jnp.sum(f(_floored(w, floor)))


@_eigh_trace_function.defjvp
def _eigh_trace_function_jvp(name, param, floor, primals, tangents):
  (a,), (da,) = primals, tangents
  f, df, _ = _spectral_table(name, param)
  w, u = jnp.linalg.eigh(_symmetrize(a))
  x = _floored(w, floor)
  slope = df(x) if floor is None else jnp.where(w > floor, df(x), 0.0)
  rotated_diag = jnp.sum(u * _mm(_symmetrize(da), u), axis=0)  # diag(U^T dA U)
  return jnp.sum(f(x)), jnp.sum(slope * rotated_diag)


# --------------------------------------------------------------------------------------
# Matrix logarithm and traces of powers.
# --------------------------------------------------------------------------------------
def taylor_logm(a: Array, order: int = 4) -> Array:
  """``TaylorLog_K(A) = sum_{k=1..K} (-1)^{k+1} (A - I)^k / k`` (Horner: K-1 matmuls).

  Valid (convergent as K grows) when the spectral radius of ``A - I`` is below 1;
  defined for any square ``A``. This is the Matrix-SSL / MEC official approximation.
  """
  check_square(a, "a")
  check_order(order)
  x = a - _eye_like(a)
  eye = _eye_like(a)
  # log(I + X) ~ X (c1 I + X (c2 I + ... X cK)), c_k = (-1)^{k+1} / k.
  acc = eye * ((-1.0) ** (order + 1) / order)
  for k in range(order - 1, 0, -1):
    acc = eye * ((-1.0) ** (k + 1) / k) + _mm(x, acc)
  return _mm(x, acc)


def power_traces(m: Array, order: int, left: Optional[Array] = None) -> Array:
  """``[tr(L M^k) for k in 0..order]`` (``L = I`` when ``left`` is None).

  Uses ``tr(L M^(a+b)) = sum((L M^a) * (M^b)^T)``, so only powers up to
  ``ceil(order / 2)`` are formed: ``ceil(order/2) - 1`` matmuls instead of ``order - 1``
  (plus ``ceil(order/2)`` for a ``left`` factor).
  """
  check_square(m, "m")
  check_order(order)
  if left is not None:
    check_square(left, "left")
    if left.shape != m.shape:
      raise ValueError(f"left must have the shape of m {m.shape}; got {left.shape}.")
  half = max(1, (order + 1) // 2)
  powers = [m]  # powers[i] = M^(i+1)
  for _ in range(half - 1):
    powers.append(_mm(powers[-1], m))
  if left is None:
    out = [jnp.asarray(m.shape[0], m.dtype)]  # tr(M^0) = tr(I)
    for k in range(1, order + 1):
      if k <= half:
        out.append(jnp.trace(powers[k - 1]))
      else:
        a, b = k - half, half
        out.append(_trace_of_product(powers[a - 1], powers[b - 1]))
    return jnp.stack(out)
  left_powers = [left] + [_mm(left, p) for p in powers[:half]]  # L M^a, a = 0..half
  out = [jnp.trace(left)]
  for k in range(1, order + 1):
    b = min(k, half)
    a = k - b
    out.append(_trace_of_product(left_powers[a], powers[b - 1]))
  return jnp.stack(out)


def _taylor_coefficients(order: int, shift: float) -> list[list[float]]:
  """Coefficients ``c[j]`` with ``TaylorLog_K(X + shift I) = sum_j c[j] X^j``.

  ``sum_k (-1)^{k+1}/k (X + (shift - 1) I)^k`` expanded binomially in powers of X.
  """
  s = shift - 1.0
  coeffs = [0.0] * (order + 1)
  for k in range(1, order + 1):
    ck = (-1.0) ** (k + 1) / k
    for j in range(k + 1):
      coeffs[j] += ck * math.comb(k, j) * s ** (k - j)
  return coeffs


def taylor_trace_from_power_traces(traces: Array, order: int, shift: float = 1.0) -> Array:
  """``tr TaylorLog_K(X + shift I)`` (or ``tr(L TaylorLog_K(X + shift I))``) from
  ``traces[j] = tr(X^j)`` (or ``tr(L X^j)``), ``j = 0..K``."""
  coeffs = jnp.asarray(_taylor_coefficients(order, shift), traces.dtype)
  return jnp.sum(coeffs * traces[: order + 1])


def trace_taylor_logm(a: Array, order: int = 4) -> Array:
  """``tr TaylorLog_K(A)`` from traces of powers of ``A - I`` (no power series formed)."""
  check_square(a, "a")
  check_order(order)
  x = a - _eye_like(a)
  return taylor_trace_from_power_traces(power_traces(x, order), order)


def logm(a: Array, *, method: str = "eigh", order: int = 4,
         floor: Optional[float] = None) -> Array:
  """Matrix logarithm.

  * ``"eigh"``: exact for symmetric PSD ``a``; eigenvalues are floored at ``floor``
    (default: the dtype's machine epsilon); tie-safe custom derivative.
  * ``"taylor"``: ``TaylorLog_K(a)`` of order ``order``; any square ``a``.
  """
  check_square(a, "a")
  check_choice(method, LOGM_METHODS, "method")
  if method == "taylor":
    return taylor_logm(a, order)
  return _eigh_function(a, "log", 0.0, _default_floor(a.dtype, floor))


def spectral_function(a: Array, name: str, *, param: float = 0.0,
                      floor: Optional[float] = None) -> Array:
  """``U f(L) U^T`` of a symmetric matrix for ``name`` in {"log", "xlogx", "power",
  "log1p_over_x"}, with the tie-safe derivative (floor applies to "log"/"xlogx"/"power")."""
  check_square(a, "a")
  check_choice(name, ("log", "xlogx", "power", "log1p_over_x"), "name")
  fl = None if name == "log1p_over_x" else _default_floor(a.dtype, floor)
  return _eigh_function(a, name, float(param), fl)


def trace_logm(a: Array, *, method: str = "slogdet", order: int = 4,
               floor: Optional[float] = None) -> Array:
  """``tr log(A)``: exact via ``log det`` ("slogdet", any square A with positive
  determinant; "cholesky", "eigh": symmetric PD), or the Taylor series ("taylor")."""
  check_square(a, "a")
  check_choice(method, LOGDET_METHODS + ("taylor",), "method")
  if method == "taylor":
    return trace_taylor_logm(a, order)
  return logdet(a, method=method, floor=floor)


# --------------------------------------------------------------------------------------
# Log-determinants.
# --------------------------------------------------------------------------------------
def logdet(a: Array, *, method: str = "cholesky", floor: Optional[float] = None) -> Array:
  """``log det(A)``.

  * ``"cholesky"``: symmetric positive-definite ``A``: ``2 sum log diag(chol(A))``.
  * ``"slogdet"``: any square ``A`` with positive determinant (LU); exact ``tr log A``.
  * ``"eigh"``: symmetric PSD ``A``, eigenvalues floored at ``floor``; tie-safe gradient.
  """
  check_square(a, "a")
  check_choice(method, LOGDET_METHODS, "method")
  if method == "cholesky":
    chol = jnp.linalg.cholesky(_symmetrize(a))
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
  if method == "slogdet":
    return jnp.linalg.slogdet(a)[1]
  return _eigh_trace_function(a, "log", 0.0, _default_floor(a.dtype, floor))


def logdet_identity_plus_product(a: Array, b: Array, *, scale: float = 1.0,
                                 side: str = "auto", method: Optional[str] = None) -> Array:
  """``log det(I_D + scale a^T b)`` for ``(B, D)`` factors ``a``, ``b``.

  The dual side uses Sylvester's identity ``det(I_D + a^T b) = det(I_B + b a^T)``.
  ``method`` defaults to "cholesky" when ``a is b`` (symmetric PD) and "slogdet" otherwise.
  """
  check_choice(side, SIDES, "side")
  symmetric = a is b
  check_same_batch(a, b)
  side = _resolve_side(side, a.shape[0], a.shape[1])
  if side == "primal":
    inner = scale * _mm(a.T, b)
  else:
    inner = scale * _mm(b, a.T)
  method = method or ("cholesky" if symmetric else "slogdet")
  return logdet(_eye_like(inner) + inner, method=method)


# --------------------------------------------------------------------------------------
# Covariance traces on the cheaper side.
# --------------------------------------------------------------------------------------
def product_power_traces(a: Array, b: Array, *, order: int, side: str = "auto") -> Array:
  """``[tr((a^T b)^k) for k in 0..order]`` for ``(B, D)`` factors, on the smaller side.

  Primal: powers of the ``D x D`` matrix ``a^T b``; dual: of the ``B x B`` matrix
  ``b a^T`` (the same non-zero spectrum). ``k = 0`` counts the primal identity, ``D``.
  """
  _check_rank(a, 2, "a", "a batch of shape (B, D)")
  _check_rank(b, 2, "b", "a batch of shape (B, D)")
  if a.shape != b.shape:
    raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}.")
  side = _resolve_side(side, a.shape[0], a.shape[1])
  m = _mm(a.T, b) if side == "primal" else _mm(b, a.T)
  return power_traces(m, order).at[0].set(a.shape[1])


def _covariance_factors(a, b, center, normalize):
  check_batch(a, "a")
  if b is not None:
    check_batch(b, "b")
    check_same_batch(a, b)
    if b.shape[1] != a.shape[1]:
      raise ValueError(f"a and b must have the same width; got a.shape={a.shape}, "
                       f"b.shape={b.shape}.")
  fa = covariance_factor(a, center=center, normalize=normalize)
  fb = fa if b is None else covariance_factor(b, center=center, normalize=normalize)
  return fa, fb


def covariance_power_traces(a: Array, b: Optional[Array] = None, *, order: int,
                            center: bool = True, normalize: bool = True,
                            side: str = "auto") -> Array:
  """``[tr(C(a, b)^k) for k in 0..order]`` (``tr(C^0) = D``), on the smaller side."""
  fa, fb = _covariance_factors(a, b, center, normalize)
  return product_power_traces(fa, fb, order=order, side=side)


def _check_shift(shift, dim):
  if dim is None and shift != 1:
    raise ValueError(
        f"shift must be 1 for an operator on an infinite-dimensional space (dim=None); got "
        f"{shift}. Only I + C has a finite trace-log there.")


def _identity_trace(dim, dtype):
  return jnp.asarray(0 if dim is None else dim, dtype)


def operator_trace_logm(g: Array, *, dim: Optional[int], shift: float = 1.0,
                        method: str = "taylor", order: int = 4) -> Array:
  """``tr log(C + shift I)`` for an operator ``C`` given by a ``B x B`` matrix ``g`` with
  the same non-zero spectrum (``C = F_a^T F_b``, ``g = F_b F_a^T``; for kernels
  ``g = J K J / B``). ``dim`` is the dimension of ``C``'s space (``None``: infinite,
  which needs ``shift = 1``).

  ``"taylor"``: ``sum_j c_j tr(g^j)`` (the binomial re-expansion of TaylorLog_K about
  ``shift``); ``"exact"``: ``dim log(shift) + log det(I_B + g / shift)`` (LU).
  """
  check_square(g, "g")
  check_choice(method, ("taylor", "exact"), "method")
  _check_shift(shift, dim)
  if method == "taylor":
    traces = power_traces(g, order).at[0].set(_identity_trace(dim, g.dtype))
    return taylor_trace_from_power_traces(traces, order, shift)
  if not shift > 0:
    raise ValueError(f"shift must be positive for the exact logarithm; got {shift}.")
  log_shift = 0.0 if dim is None else dim * math.log(shift)
  return log_shift + logdet(_eye_like(g) + g / shift, method="slogdet")


def operator_trace_product_logm(g_zz: Array, g_zp: Array, trace_pp: Array, *,
                                dim: Optional[int], shift: float = 1.0,
                                method: str = "taylor", order: int = 4) -> Array:
  """``tr[(C_pp + shift I) log(C_zz + shift I)]`` from ``B x B`` Gram matrices.

  With ``C_xy = F_x^T F_y``: ``g_zz = F_z F_z^T``, ``g_zp = F_z F_p^T`` and
  ``trace_pp = tr(C_pp)``. Uses ``tr(C_pp C_zz^j) = tr(g_zp g_zp^T g_zz^(j-1))`` (j >= 1)
  for the series, and for the exact value
  ``log(I + A^T A) = A^T h(A A^T) A`` with ``h(x) = log(1 + x) / x``, ``A = F_z/sqrt(shift)``:
  ``tr(C_pp log(I + C_zz/shift)) = tr(g_zp g_zp^T h(g_zz/shift)) / shift``.
  """
  check_square(g_zz, "g_zz")
  check_square(g_zp, "g_zp")
  check_choice(method, ("taylor", "exact"), "method")
  _check_shift(shift, dim)
  left = _mm(g_zp, g_zp.T)
  identity_trace = _identity_trace(dim, g_zz.dtype)
  if method == "taylor":
    t = power_traces(g_zz, order).at[0].set(identity_trace)
    s = jnp.concatenate([trace_pp[None], power_traces(g_zz, order - 1, left)[: order]]) \
        if order > 1 else jnp.stack([trace_pp, jnp.trace(left)])
    coeffs = jnp.asarray(_taylor_coefficients(order, shift), g_zz.dtype)
    return jnp.sum(coeffs * (s + shift * t))
  if not shift > 0:
    raise ValueError(f"shift must be positive for the exact logarithm; got {shift}.")
  log_shift = math.log(shift)
  h = spectral_function(g_zz / shift, "log1p_over_x")
  cross = _trace_of_product(left, h) / shift
  logdet_term = logdet(_eye_like(g_zz) + g_zz / shift, method="cholesky")
  return log_shift * (trace_pp + shift * identity_trace) + cross + shift * logdet_term


def trace_covariance_product_logm(p: Array, z: Array, *, shift: float = 1.0,
                                  method: str = "taylor", order: int = 4,
                                  center: bool = True, normalize: bool = True,
                                  side: str = "auto") -> Array:
  """``tr[(C(p, p) + shift I) log(C(z, z) + shift I)]`` (Matrix-SSL's alignment trace).

  ``"taylor"``: ``log`` is ``TaylorLog_K``; ``"exact"``: the eigh logarithm (primal) or
  its ``B x B`` dual (:func:`operator_trace_product_logm`).
  """
  check_choice(method, ("taylor", "exact"), "method")
  fp, fz = _covariance_factors(p, z, center, normalize)
  dim = p.shape[1]
  side = _resolve_side(side, p.shape[0], dim)
  if side == "dual":
    return operator_trace_product_logm(_mm(fz, fz.T), _mm(fz, fp.T), jnp.sum(fp * fp),
                                       dim=dim, shift=shift, method=method, order=order)
  c_pp, c_zz = _mm(fp.T, fp), _mm(fz.T, fz)
  eye = _eye_like(c_zz)
  if method == "exact":
    return _trace_of_product(c_pp + shift * eye, logm(c_zz + shift * eye, method="eigh"))
  s = power_traces(c_zz, order, c_pp)
  t = power_traces(c_zz, order)
  coeffs = jnp.asarray(_taylor_coefficients(order, shift), c_zz.dtype)
  return jnp.sum(coeffs * (s + shift * t))


def product_frobenius_sq(a: Array, b: Optional[Array] = None, *, side: str = "auto"
                         ) -> Array:
  """``||a^T b||_F^2`` for ``(B, D)`` factors, on the smaller side.

  Dual: ``tr(a^T b b^T a) = sum((a a^T) o (b b^T))`` with ``B x B`` Gram matrices.
  """
  _check_rank(a, 2, "a", "a batch of shape (B, D)")
  b = a if b is None else b
  _check_rank(b, 2, "b", "a batch of shape (B, D)")
  check_same_batch(a, b)
  side = _resolve_side(side, a.shape[0], max(a.shape[1], b.shape[1]))
  if side == "primal":
    return jnp.sum(jnp.square(_mm(a.T, b)))
  return jnp.sum(_mm(a, a.T) * _mm(b, b.T))


def trace_covariance_logm(a: Array, b: Optional[Array] = None, *, shift: float = 1.0,
                          method: str = "taylor", order: int = 4, center: bool = True,
                          normalize: bool = True, side: str = "auto") -> Array:
  """``tr log(C(a, b) + shift I_D)`` on the smaller side (Matrix-SSL's uniformity trace).

  ``"taylor"``: ``tr TaylorLog_K(C + shift I)`` from traces of covariance powers.
  ``"exact"``: ``D log(shift) + log det(I + C / shift)`` (Sylvester on the dual side;
  Cholesky when ``b`` is None, LU otherwise). Requires ``shift > 0``.
  """
  check_choice(method, ("taylor", "exact"), "method")
  fa, fb = _covariance_factors(a, b, center, normalize)
  if method == "taylor":
    traces = product_power_traces(fa, fb, order=order, side=side)
    return taylor_trace_from_power_traces(traces, order, shift)
  if not shift > 0:
    raise ValueError(f"shift must be positive for the exact logarithm; got {shift}.")
  return a.shape[1] * math.log(shift) + logdet_identity_plus_product(
      fa, fb, scale=1.0 / shift, side=side)


# --------------------------------------------------------------------------------------
# Entropies and divergences.
# --------------------------------------------------------------------------------------
def matrix_entropy(p: Array, *, method: str = "eigh", order: int = 4,
                   floor: Optional[float] = None) -> Array:
  """Matrix entropy (paper form) ``ME(P) = -tr(P log P) + tr(P)`` of a PSD matrix."""
  check_square(p, "p")
  check_choice(method, LOGM_METHODS, "method")
  if method == "eigh":
    return -_eigh_trace_function(p, "xlogx", 0.0, _default_floor(p.dtype, floor)) + \
        jnp.trace(p)
  return -_trace_of_product(p, taylor_logm(p, order)) + jnp.trace(p)


def von_neumann_entropy(rho: Array, *, normalize: bool = True,
                        floor: Optional[float] = None) -> Array:
  """``S(rho) = -tr(rho log rho)``; ``normalize`` divides ``rho`` by its trace first."""
  check_square(rho, "rho")
  if normalize:
    rho = rho / jnp.trace(rho)
  return -_eigh_trace_function(rho, "xlogx", 0.0, _default_floor(rho.dtype, floor))


def renyi_entropy(rho: Array, alpha: float = 2.0, *, normalize: bool = True,
                  floor: Optional[float] = None) -> Array:
  """Matrix Renyi-alpha entropy ``log(tr(rho^alpha)) / (1 - alpha)`` (alpha > 0).

  alpha = 1 is the von Neumann limit; alpha = 2 needs no eigendecomposition
  (``tr(rho^2) = ||rho||_F^2`` for symmetric rho).
  """
  check_square(rho, "rho")
  if not alpha > 0:
    raise ValueError(f"alpha must be positive; got {alpha!r}.")
  if normalize:
    rho = rho / jnp.trace(rho)
  if alpha == 1:
    return von_neumann_entropy(rho, normalize=False, floor=floor)
  if alpha == 2:
    power_trace = jnp.sum(rho * rho.T)
  else:
    power_trace = _eigh_trace_function(rho, "power", float(alpha),
                                       _default_floor(rho.dtype, floor))
  return jnp.log(power_trace) / (1.0 - alpha)


def matrix_cross_entropy(p: Array, q: Array, *, method: str = "eigh", order: int = 4,
                         floor: Optional[float] = None) -> Array:
  """``MCE(P, Q) = tr(-P log Q + Q)`` (Matrix-SSL, eq. for matrix cross-entropy)."""
  check_square(p, "p")
  check_square(q, "q")
  if p.shape != q.shape:
    raise ValueError(f"p and q must have the same shape; got {p.shape} and {q.shape}.")
  return -_trace_of_product(p, logm(q, method=method, order=order, floor=floor)) + jnp.trace(q)


def matrix_kl(p: Array, q: Array, *, method: str = "eigh", order: int = 4,
              floor: Optional[float] = None) -> Array:
  """``MKL(P || Q) = tr(P log P - P log Q - P + Q)``; 0 iff P = Q (for PD matrices)."""
  cross = matrix_cross_entropy(p, q, method=method, order=order, floor=floor)
  return cross - matrix_entropy(p, method=method, order=order, floor=floor)


def _trace_normalize(k: Array) -> Array:
  return k / jnp.trace(k)


def matrix_joint_entropy(k1: Array, k2: Array, *, alpha: float = 2.0,
                         floor: Optional[float] = None) -> Array:
  """``H_alpha(K1, K2) = H_alpha(K1 o K2 / tr(K1 o K2))`` (Hadamard product)."""
  check_square(k1, "k1")
  check_square(k2, "k2")
  check_same_batch(k1, k2, ("k1", "k2"))
  return renyi_entropy(_trace_normalize(k1 * k2), alpha, normalize=False, floor=floor)


def matrix_mutual_information(k1: Array, k2: Array, *, alpha: float = 2.0,
                              floor: Optional[float] = None) -> Array:
  """``I_alpha(K1; K2) = H(K1) + H(K2) - H(K1, K2)`` of two Gram matrices."""
  h1 = renyi_entropy(k1, alpha, normalize=True, floor=floor)
  h2 = renyi_entropy(k2, alpha, normalize=True, floor=floor)
  return h1 + h2 - matrix_joint_entropy(k1, k2, alpha=alpha, floor=floor)


# --------------------------------------------------------------------------------------
# Coding rate and effective rank.
# --------------------------------------------------------------------------------------
def total_coding_rate(z: Array, *, mu: float = 1.0, center: bool = False,
                      side: str = "auto") -> Array:
  """``TCR_mu(Z) = logdet(I_D + (mu / D) rn(Z)^T rn(Z))`` (Cholesky, dual when B < D).

  ``center=True`` centres the normalised rows over the batch first.
  """
  check_batch(z, "z")
  if not mu > 0:
    raise ValueError(f"mu must be positive; got {mu!r}.")
  zn = row_normalize(z)
  if center:
    zn = batch_center(zn)
  return logdet_identity_plus_product(zn, zn, scale=mu / z.shape[1], side=side)


def effective_rank(z: Array, *, eps: float = 1e-7, center: bool = False) -> Array:
  """RankMe effective rank ``exp(-sum_k p_k log p_k)``, ``p = s / ||s||_1 + eps``,
  with ``s`` the singular values of the ``(B, D)`` batch. Between 1 and min(B, D)."""
  check_batch(z, "z")
  if center:
    z = batch_center(z)
  s = jnp.linalg.svd(z.astype(jnp.promote_types(z.dtype, jnp.float32)),
                     compute_uv=False)
  p = s / jnp.maximum(jnp.sum(s), NORM_EPS) + eps
  return jnp.exp(-jnp.sum(p * jnp.log(p)))


def embedding_spectrum(z: Array) -> Array:
  """Eigenvalues (descending) of the centred, row-normalised covariance ``C(z, z)``."""
  return jnp.linalg.eigvalsh(cross_covariance(z))[::-1]
