"""ResNet-18/50 encoders with ImageNet and CIFAR stems (He et al., CVPR 2016).

The encoder returns globally average-pooled features (512 wide for ResNet-18, 2048 for
ResNet-50); ``num_classes`` adds a linear classifier (used for parameter counts and
supervised baselines). Layouts follow torchvision (ResNet v1.5: the stride sits on the
3x3 convolution of a bottleneck), so parameter counts match the published ones:
ResNet-18 11,689,512 and ResNet-50 25,557,032 with a 1000-way head.

* ``stem="imagenet"``: 7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max-pool.
* ``stem="cifar"``: 3x3 stride-1 convolution, BN, ReLU, no pooling (32x32 inputs).
* ``zero_init_residual``: the last BN scale of each residual block starts at zero, so
  each block starts as the identity (Goyal et al. 2017; used by Matrix-SSL and MEC).
* BatchNorm statistics are means over the batch axis of the *global* array under
  ``jax.jit``: with a batch sharded over devices, XLA reduces across devices, which is
  synchronised BN without hand-written collectives.
* ``dtype`` is the compute dtype (e.g. bfloat16); parameters stay float32.
* ``remat`` rematerialises each block in the backward pass (less memory, more compute).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

STEMS = ("imagenet", "cifar")
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1
BN_EPSILON = 1e-5


def _layers(train: bool, dtype):
  """Convolution (no bias) and BatchNorm constructors shared by the blocks."""
  conv = functools.partial(nn.Conv, use_bias=False, dtype=dtype)
  norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype)
  return conv, norm


def _residual_sum(x, y, filters, strides, conv, norm):
  """``relu(y + shortcut(x))``; a strided 1x1 projection when the shapes differ."""
  residual = x
  if residual.shape != y.shape:
    residual = conv(filters, (1, 1), (strides, strides), name="proj")(x)
    residual = norm(name="proj_bn")(residual)
  return nn.relu(y + residual)


def _last_bn_init(zero_init_residual: bool):
  return nn.initializers.zeros if zero_init_residual else nn.initializers.ones


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""
  filters: int
  strides: int = 1
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _layers(train, self.dtype)
    y = conv(self.filters, (3, 3), (self.strides, self.strides), padding=1)(x)
    y = nn.relu(norm()(y))
    y = conv(self.filters, (3, 3), padding=1)(y)
    y = norm(scale_init=_last_bn_init(self.zero_init_residual))(y)
    return _residual_sum(x, y, self.filters, self.strides, conv, norm)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 with 4x expansion (ResNet-50/101/152, v1.5)."""
  filters: int
  strides: int = 1
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _layers(train, self.dtype)
    y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
    y = conv(self.filters, (3, 3), (self.strides, self.strides), padding=1)(y)
    y = nn.relu(norm()(y))
    y = conv(self.filters * 4, (1, 1))(y)
    y = norm(scale_init=_last_bn_init(self.zero_init_residual))(y)
    return _residual_sum(x, y, self.filters * 4, self.strides, conv, norm)


class ResNet(nn.Module):
  """A ResNet encoder: images (N, H, W, 3) -> pooled features (N, width)."""
  stage_sizes: Sequence[int]
  block: Any
  stem: str = "imagenet"
  num_classes: Optional[int] = None
  zero_init_residual: bool = False
  width: int = 64
  dtype: Any = jnp.float32
  remat: bool = False

  @property
  def features(self) -> int:
    return self.width * 8 * self.block.expansion

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}; got {self.stem!r}.")
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"images must have shape (N, H, W, 3); got {x.shape}.")
    x = x.astype(self.dtype)
    _, norm = _layers(train, self.dtype)
    if self.stem == "imagenet":
      x = nn.Conv(self.width, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype,
                  name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    else:
      x = nn.Conv(self.width, (3, 3), (1, 1), padding=1, use_bias=False, dtype=self.dtype,
                  name="stem_conv")(x)
      x = nn.relu(norm(name="stem_bn")(x))
    block = nn.remat(self.block, static_argnums=(2,)) if self.remat else self.block
    for stage, blocks in enumerate(self.stage_sizes):
      for i in range(blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = block(self.width * 2 ** stage, strides, self.zero_init_residual, self.dtype,
                  name=f"stage{stage + 1}_block{i + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if self.num_classes:
      x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return x


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
