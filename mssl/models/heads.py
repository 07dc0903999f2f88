"""Projector and predictor MLPs for every recipe in ``docs/methods.md``.

An :class:`MLPHead` is ``[Dense -> (BN) -> ReLU] x len(hidden) -> Dense -> (BN)``:

* ``hidden``: widths of the hidden layers; ``out``: the output width;
* ``batch_norm``: BN after each hidden Dense; ``bias``: biases on the Dense layers
  (usually off when a BN follows);
* ``last_bn``: a BN after the output Dense; ``last_bn_affine``: whether it has a learnable
  scale and bias (Matrix-SSL / MEC / SimSiam use a BN without affine).

Each method's head widths are its config's (``configs/``, ``config.projector`` and
``config.predictor``), stated there with the published recipe they follow.
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
