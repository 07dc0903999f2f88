r"""Kernel-SSL: Matrix-SSL's objective on covariance operators in an RKHS.

Kernel-SSL (Zhang, Tan, Yang & Yuan, "Kernel-SSL: Kernel KL Divergence for Self-Supervised
Learning", 2023) "directly optimizes the mean embedding and the covariance operator within
the RKHS". No code or method text beyond the abstract is public; mssl implements it as
the RKHS form of Matrix-SSL, derived here.

**Set-up.** Let ``k`` be a kernel (linear, Gaussian, polynomial) with feature map
``phi: R^D -> H``, applied to row-normalised embeddings. For a batch ``x_1..x_B`` write
``Phi_x = [phi(x_1), ..., phi(x_B)]`` (an operator ``R^B -> H``). The empirical mean
embedding is ``m_x = Phi_x 1 / B``; removing it is multiplication by ``J = I - 11^T/B``.
The (cross-)covariance operator on ``H`` is

    C_phi(p, z) = (1/B) Phi_p J Phi_z^*  = (1/B) sum_i (phi(p_i) - m_p) (x) (phi(z_i) - m_z).

With the linear kernel (``phi = id``) this is exactly ``C(p, z)`` of Matrix-SSL.

**Traces through Gram matrices.** ``C_phi`` is never formed. For ``X = Phi_p J`` and
``Y = Phi_z J``, ``tr((X Y^*)^k) = tr((Y^* X)^k)`` and ``Y^* X = J K_zp J`` with
``K_zp[i, j] = k(z_i, p_j)``; hence

    tr(C_phi(p, z)^k)            = tr((J K_zp J / B)^k)
    tr(C_phi(p, p) C_phi(z, z)^k) = tr(G_zp G_zp^T G_zz^(k-1)),   G_xy = J K_xy J / B,
    log det(I + C_phi(p, z))      = log det(I_B + J K_zp J / B)    (Sylvester).

Its non-zero spectrum is that of the centred Gram matrix, so every quantity below is a
function of ``B x B`` matrices (``mssl.matrix.operator_trace_logm`` and
``operator_trace_product_logm``).

**Objective.** Per direction ``(p, z)``:

    T(p, z) = U_k(p, z) - w_hsic * HSIC_k(p, z) + gamma * A_k(p, z)
    U_k(p, z) = -lam * tr TaylorLog_K(C_phi(p, z) + mu I)
    A_k(p, z) = -tr[(C_phi(p, p) + mu I) TaylorLog_K(C_phi(z, z) + mu I)]
    HSIC_k(p, z) = tr(K_pp J K_zz J) / B^2

and ``loss = 0.5 [T(p2, z1) + T(p1, z2)]`` with ``p = sg(teacher)``. For a non-linear
kernel ``H`` is infinite-dimensional: ``tr(I)`` is not finite, so only ``I + C_phi``
has a finite trace-logarithm and ``mu`` is fixed to 1 (any other value raises). The
linear kernel (``H = R^D``) allows any ``mu`` and uses the covariance itself (primal or
dual side by shape), so ``kernel="linear"`` with ``w_hsic = 0`` *is* Matrix-SSL.

**Reference point.** With the linear kernel, ``lam = mu = 1``, ``gamma = 0`` and the
order-4 series, ``T(p, z) = U(p, z) - 0.003 * HSIC_linear(p, z)``: the official Matrix-SSL
first-commit "--HSIC" variant.

The HSIC term rewards dependence between the teacher's and the student's embeddings of the
same images (an alignment in the RKHS); the Gaussian bandwidth defaults to the median
pairwise distance of the joint batch ``[z; p]`` (held constant under differentiation).
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
  total = uniformity - w_hsic * hsic + gamma * alignment
  return {"loss": total, "uniformity": uniformity, "alignment": alignment, "hsic": hsic}


@register("kernel_ssl", inputs="two_branch", uses_teacher=True)
def kernel_ssl(z1, z2, p1, p2, *, kernel: str = "linear", lam: float = 1.0,
               mu: float = 1.0, gamma: float = 1.0, w_hsic: float = 0.003, order: int = 4,
               logm: str = "taylor", bandwidth: Optional[float] = None, degree: int = 2,
               coef0: float = 1.0, side: str = "auto"):
  """Kernel-SSL: ``0.5 [T(p2, z1) + T(p1, z2)]``; see the module docstring.

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
