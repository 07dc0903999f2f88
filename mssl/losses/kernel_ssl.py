r"""Kernel-SSL: Matrix-SSL's objective plus an HSIC term, as its authors trained it.

**Source.** Kernel-SSL ("Kernel-SSL: Kernel KL Divergence for Self-supervised Learning",
Zhang, Tan, Yang & Yuan, 2023) is the first version of arXiv 2305.17326 (v1/v2; later
versions are Matrix-SSL, "Matrix Information Theory for Self-Supervised Learning"). Its
code is github.com/yifanzhang-pro/Matrix-SSL at commit bf80b2e (2023-05-23,
``main_pretrain.py``: ``mce_loss_func`` and the training loop), run as
``--mce_mu 1.0 --mce_lambd 1.0 --HSIC --gamma 1.0`` (README of commit a5ec463). The v1
abstract reports +4.6 points over SimCLR (ImageNet linear probe, 100 epochs).
See ``docs/methods.md`` for every objective mssl implements.

**The authors' loss (the default here).** ``rn`` normalises rows, ``J = I_B - 11^T/B``,
``C(a, b) = rn(a)^T J rn(b) / B``. With ``p`` the EMA teacher's output (no gradient) and
``z`` the online output after the predictor, each of the four loss calls of that code
(two uniformity calls, two gamma-weighted alignment calls) adds
``-w_hsic * HSIC(p, z)``, ``HSIC(p, z) = tr(rn(p) rn(p)^T J rn(z) rn(z)^T J) / B^2``
(= ``||C(p, z)||_F^2``; ``w_hsic`` is the code's ``align_gamma = 0.003``). Per direction

    T(p, z) = U(p, z) + gamma * A(p, z) - (1 + gamma) * w_hsic * HSIC(p, z)
    U(p, z) = -lam * tr TaylorLog_K(C(p, z) + mu I)
    A(p, z) = -tr[(C(p, p) + mu I) TaylorLog_K(C(z, z) + mu I)]

and ``loss = 0.5 [T(p2, z1) + T(p1, z2)]`` with ``lam = mu = gamma = 1``, ``K = 4``: the
official training loss. ``w_hsic = 0`` is Matrix-SSL (:func:`mssl.losses.matrix_ssl`).

**Non-linear kernels (an mssl extension, not the authors').** The paper's abstract reads
the objective as acting on mean embeddings and covariance operators in an RKHS; the
authors' code uses the linear kernel, where the RKHS is ``R^D`` and ``C_phi = C``.
``kernel="gaussian"`` or ``"polynomial"`` replaces ``rn(x) rn(y)^T`` by a kernel Gram
``K_xy[i, j] = k(rn(x)_i, rn(y)_j)``. With ``Phi_x = [phi(x_1) .. phi(x_B)]`` the
operator ``C_phi(p, z) = Phi_p J Phi_z^* / B`` is never formed: cycling the trace,

    tr(C_phi(p, z)^k)             = tr(G_zp^k),                     G_xy = J K_xy J / B,
    tr(C_phi(p, p) C_phi(z, z)^k)  = tr(G_zp G_zp^T G_zz^(k-1)),      k >= 1,
    log det(I + C_phi(p, z))       = log det(I_B + G_zp)              (Sylvester),

so every term is a function of ``B x B`` matrices (``mssl.matrix.operator_trace_logm``,
``operator_trace_product_logm``), and ``HSIC_k(p, z) = tr(K_pp J K_zz J) / B^2``. The HSIC
enters exactly where the authors put it (``(1 + gamma) * w_hsic``). An infinite-
dimensional RKHS has no finite ``tr(I)``, so only ``I + C_phi`` has a finite trace-
logarithm: ``mu`` must be 1 for these kernels. The Gaussian bandwidth defaults to the
median pairwise distance of ``[rn(z); rn(p)]`` (a constant under differentiation).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from mssl import matrix
from mssl.losses.common import check_views, sg
from mssl.losses.matrix_ssl import LOGM_PATHS, matrix_alignment, matrix_uniformity
from mssl.losses.registry import register


def _gram(x, y, kernel, bandwidth, degree, coef0):
  return matrix.gram_matrix(x, y, kernel=kernel, bandwidth=bandwidth, degree=degree,
                            coef0=coef0)


def kernel_ssl_direction(p, z, *, kernel: str = "linear", lam: float = 1.0,
                         mu: float = 1.0, gamma: float = 1.0, w_hsic: float = 0.003,
                         order: int = 4, logm: str = "taylor",
                         bandwidth: Optional[float] = None, degree: int = 2,
                         coef0: float = 1.0, side: str = "auto") -> dict:
  """The components of ``T(p, z)`` for one direction (``p`` gets no gradient)."""
  matrix.check_choice(kernel, matrix.KERNELS, "kernel")
  matrix.check_choice(logm, LOGM_PATHS, "logm")
  matrix.check_order(order)
  if kernel != "linear" and mu != 1:
    raise ValueError(
        f"mu must be 1 for the {kernel!r} kernel (its RKHS is infinite-dimensional, so only "
        f"I + C_phi has a finite log-determinant); got mu={mu!r}. Only kernel='linear' "
        "allows another mu.")
  p, z = check_views([sg(p), z], ["p", "z"])
  pn, zn = matrix.row_normalize(p), matrix.row_normalize(z)
  if kernel == "gaussian" and bandwidth is None:
    bandwidth = matrix.median_bandwidth(jnp.concatenate([zn, pn]))
  gram = lambda x, y: _gram(x, y, kernel, bandwidth, degree, coef0)
  k_pp, k_zz = gram(pn, pn), gram(zn, zn)
  hsic = matrix.hsic(k_pp, k_zz)
  if kernel == "linear":
    kw = dict(mu=mu, order=order, logm=logm, side=side)
    uniformity = matrix_uniformity(p, z, lam=lam, **kw)
    alignment = matrix_alignment(p, z, **kw)
  else:
    batch = p.shape[0]
    g_zp = matrix.centered_gram(gram(zn, pn)) / batch
    g_zz = matrix.centered_gram(k_zz) / batch
    trace_pp = jnp.trace(matrix.centered_gram(k_pp)) / batch
    uniformity = -lam * matrix.operator_trace_logm(g_zp, dim=None, method=logm,
                                                   order=order)
    alignment = -matrix.operator_trace_product_logm(g_zz, g_zp, trace_pp, dim=None,
                                                    method=logm, order=order)
  # The authors' code adds -w_hsic * HSIC inside each loss call: once with the
  # uniformity and once with the gamma-weighted alignment.
  total = uniformity + gamma * alignment - (1.0 + gamma) * w_hsic * hsic
  return {"loss": total, "uniformity": uniformity, "alignment": alignment, "hsic": hsic}


@register("kernel_ssl", inputs="two_branch", teacher="ema")
def kernel_ssl(z1, z2, p1, p2, *, kernel: str = "linear", lam: float = 1.0,
               mu: float = 1.0, gamma: float = 1.0, w_hsic: float = 0.003, order: int = 4,
               logm: str = "taylor", bandwidth: Optional[float] = None, degree: int = 2,
               coef0: float = 1.0, side: str = "auto"):
  """Kernel-SSL: ``0.5 [T(p2, z1) + T(p1, z2)]``; see the module docstring.

  ``T(p, z) = U + gamma * A - (1 + gamma) * w_hsic * HSIC``. The defaults (linear
  kernel, ``lam = mu = gamma = 1``, ``w_hsic = 0.003``, order-4 Taylor series) are the
  authors' training loss (Matrix-SSL commit bf80b2e with ``--HSIC``); ``kernel=
  "gaussian" | "polynomial"`` is an mssl extension (``mu`` must then be 1).
  Returns ``(loss, {"uniformity", "alignment", "hsic"})`` (means over the directions).
  """
  z1, z2, p1, p2 = check_views([z1, z2, p1, p2], ["z1", "z2", "p1", "p2"])
  kw = dict(kernel=kernel, lam=lam, mu=mu, gamma=gamma, w_hsic=w_hsic, order=order,
            logm=logm, bandwidth=bandwidth, degree=degree, coef0=coef0, side=side)
  a = kernel_ssl_direction(p2, z1, **kw)
  b = kernel_ssl_direction(p1, z2, **kw)
  mean = jax.tree_util.tree_map(lambda x, y: 0.5 * (x + y), a, b)
  loss = mean.pop("loss")
  return loss, mean
