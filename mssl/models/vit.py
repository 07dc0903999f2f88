"""Vision Transformers (Dosovitskiy et al., ICLR 2021): ViT-Ti/S/B/L with a CLS token.

Pre-norm transformer blocks (LayerNorm eps 1e-6, multi-head self-attention, GELU MLP),
a learnable CLS token, learnable or fixed 2-D sin-cos position embeddings, and a final
LayerNorm. ``__call__`` returns the normalised CLS feature (or class logits when
``num_classes`` is set); :meth:`ViT.encode_tokens` returns every normalised token.
With learnable position embeddings and a 1000-way head, ViT-B/16 at 224 x 224 has
86,567,656 parameters, the published count.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

POS_EMBEDDINGS = ("learned", "sincos")
LN_EPSILON = 1e-6

# name -> (width, depth, heads, mlp_dim)
VIT_SIZES = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "micro": (64, 2, 2, 128),  # for tests and CPU demos
}


def sincos_2d(grid: int, width: int) -> np.ndarray:
  """Fixed 2-D sin-cos position embeddings (MAE / MoCo-v3), shape (grid * grid, width)."""
  if width % 4:
    raise ValueError(f"width must be divisible by 4 for sin-cos embeddings; got {width}.")
  ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                       indexing="ij")
  omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
  parts = []
  for coord in (ys.reshape(-1), xs.reshape(-1)):
    angles = coord[:, None] * omega[None, :]
    parts += [np.sin(angles), np.cos(angles)]
  return np.concatenate(parts, axis=1).astype(np.float32)


def sincos_with_cls(grid: int, width: int) -> np.ndarray:
  """``(1, 1 + grid^2, width)``: a zero row for the CLS token, then the sin-cos table."""
  table = np.concatenate([np.zeros((1, width), np.float32), sincos_2d(grid, width)])
  return table[None]


class MlpBlock(nn.Module):
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=nn.initializers.xavier_uniform())
    x = nn.gelu(dense(self.mlp_dim)(x), approximate=False)
    return dense(width)(x)


class EncoderBlock(nn.Module):
  """Pre-norm block: x + drop_path(attn(LN(x))), then x + drop_path(mlp(LN(x)))."""
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  def _drop_path(self, y, train):
    if not train or self.drop_path == 0.0:
      return y
    # Stochastic depth: one Bernoulli draw per example, survivors scaled by 1/keep.
    mask = nn.Dropout(rate=self.drop_path, broadcast_dims=tuple(range(1, y.ndim)),
                      deterministic=False)(jnp.ones_like(y))
    return y * mask

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform())(y, y)
    x = x + self._drop_path(y, train)
    y = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype)(x)
    y = MlpBlock(self.mlp_dim, self.dtype)(y)
    return x + self._drop_path(y, train)


class Transformer(nn.Module):
  """A stack of encoder blocks followed by a final LayerNorm."""
  depth: int
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    block = nn.remat(EncoderBlock, static_argnums=(2,)) if self.remat else EncoderBlock
    for i in range(self.depth):
      rate = self.drop_path * i / max(1, self.depth - 1)  # linearly increasing
      x = block(self.num_heads, self.mlp_dim, rate, self.dtype, name=f"block{i}")(x, train)
    return nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, name="final_norm")(x)


class ViT(nn.Module):
  """A ViT encoder: images (N, H, W, 3) -> CLS feature (N, width) after the final norm."""
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  patch_size: int = 16
  image_size: int = 224
  pos_embedding: str = "learned"
  num_classes: Optional[int] = None
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  @property
  def features(self) -> int:
    return self.width

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size

  def setup(self):
    if self.pos_embedding not in POS_EMBEDDINGS:
      raise ValueError(f"pos_embedding must be one of {POS_EMBEDDINGS}; got "
                       f"{self.pos_embedding!r}.")
    if self.image_size % self.patch_size:
      raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size "
                       f"{self.patch_size}.")
    self.patch_embed = nn.Conv(self.width, (self.patch_size,) * 2, (self.patch_size,) * 2,
                               padding="VALID", dtype=self.dtype, name="patch_embed")
    self.cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.width))
    num_patches = self.grid ** 2
    if self.pos_embedding == "learned":
      self.pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                            (1, num_patches + 1, self.width))
    else:  # fixed; the CLS position is zero, as in MAE
      self.pos = jnp.asarray(sincos_with_cls(self.grid, self.width))
    self.encoder = Transformer(self.depth, self.num_heads, self.mlp_dim, self.drop_path,
                               self.dtype, self.remat, name="encoder")
    if self.num_classes:
      self.head = nn.Dense(self.num_classes, dtype=self.dtype, name="head")

  def embed_patches(self, images):
    """Patch tokens with position embeddings, shape (N, grid^2, width), no CLS."""
    if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
      raise ValueError(f"images must have shape (N, {self.image_size}, {self.image_size}, 3)"
                       f"; got {images.shape}.")
    x = self.patch_embed(images.astype(self.dtype))
    x = x.reshape(x.shape[0], -1, self.width)
    return x + self.pos[:, 1:].astype(x.dtype)

  def encode_tokens(self, tokens, train: bool = False):
    """Prepends the CLS token to ``tokens`` (N, L, width) and runs the encoder."""
    cls = jnp.broadcast_to(self.cls + self.pos[:, :1], (tokens.shape[0], 1, self.width))
    return self.encoder(jnp.concatenate([cls.astype(tokens.dtype), tokens], axis=1), train)

  def __call__(self, images, train: bool = False):
    x = self.encode_tokens(self.embed_patches(images), train)[:, 0]
    if self.num_classes:
      x = self.head(x)
    return x


def vit(size: str, **kwargs) -> ViT:
  """``vit("base", patch_size=16)``: a ViT of a named size."""
  if size not in VIT_SIZES:
    raise ValueError(f"ViT size must be one of {tuple(VIT_SIZES)}; got {size!r}.")
  width, depth, heads, mlp = VIT_SIZES[size]
  return ViT(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, **kwargs)
