"""Projector and predictor MLPs for every recipe in ``docs/methods.md``.

An :class:`MLPHead` is ``[Dense -> (BN) -> ReLU] x len(hidden) -> Dense -> (BN)``:

* ``hidden``: widths of the hidden layers; ``out``: the output width;
* ``batch_norm``: BN after each hidden Dense; ``bias``: biases on the Dense layers
  (usually off when a BN follows);
* ``last_bn``: a BN after the output Dense; ``last_bn_affine``: whether it has a learnable
  scale and bias (Matrix-SSL / MEC / SimSiam use a BN without affine).

:data:`RECIPES` names the published heads (``head(name)`` builds one):

=====================  =====================================================
matrix_ssl_projector   2048-2048-2048, no bias, BN, last BN without affine
matrix_ssl_predictor   2048-512-2048, no bias, BN on the hidden layer
byol_projector         4096-256 (bias, BN on the hidden layer)
byol_predictor         4096-256
simclr_projector       2048-128 (CIFAR recipe of solo-learn: 2048 hidden)
simsiam_projector      2048-2048-2048, no bias, BN, last BN without affine
simsiam_predictor      512-2048 (bottleneck)
barlow_projector       2048-2048-2048 (solo-learn CIFAR; 8192 for ImageNet)
vicreg_projector       2048-2048-2048 (solo-learn CIFAR; 8192 for ImageNet)
frossl_projector       2048-2048-1024
spectral_projector     2048-2048 (solo-learn CIFAR)
=====================  =====================================================
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mssl.models.resnet import BN_EPSILON, BN_MOMENTUM


class MLPHead(nn.Module):
  hidden: Sequence[int]
  out: int
  batch_norm: bool = True
  bias: bool = True
  last_bn: bool = False
  last_bn_affine: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, use_bias=self.bias, dtype=self.dtype, name=f"dense{i}")(x)
      if self.batch_norm:
        x = norm(name=f"bn{i}")(x)
      x = nn.relu(x)
    x = nn.Dense(self.out, use_bias=self.bias, dtype=self.dtype, name="out")(x)
    if self.last_bn:
      x = norm(use_scale=self.last_bn_affine, use_bias=self.last_bn_affine, name="out_bn")(x)
    return x


RECIPES = {
    "matrix_ssl_projector": dict(hidden=(2048, 2048), out=2048, bias=False, last_bn=True,
                                 last_bn_affine=False),
    "matrix_ssl_predictor": dict(hidden=(512,), out=2048, bias=False),
    "byol_projector": dict(hidden=(4096,), out=256),
    "byol_predictor": dict(hidden=(4096,), out=256),
    "simclr_projector": dict(hidden=(2048,), out=128),
    "simsiam_projector": dict(hidden=(2048, 2048), out=2048, bias=False, last_bn=True,
                              last_bn_affine=False),
    "simsiam_predictor": dict(hidden=(512,), out=2048, bias=False),
    "barlow_projector": dict(hidden=(2048, 2048), out=2048, bias=False),
    "vicreg_projector": dict(hidden=(2048, 2048), out=2048),
    "frossl_projector": dict(hidden=(2048, 2048), out=1024),
    "spectral_projector": dict(hidden=(2048,), out=2048),
}


def head(name: str, **overrides) -> MLPHead:
  """A named recipe, e.g. ``head("matrix_ssl_projector", out=512)``."""
  if name not in RECIPES:
    raise ValueError(f"head must be one of {tuple(sorted(RECIPES))}; got {name!r}.")
  return MLPHead(**{**RECIPES[name], **overrides})
