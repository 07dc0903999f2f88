"""Vision Transformers (Dosovitskiy et al., ICLR 2021): ViT-Ti/S/B/L with a CLS token.

Pre-norm transformer blocks (LayerNorm eps 1e-6, multi-head self-attention, GELU MLP),
a learnable CLS token, learnable or fixed 2-D sin-cos position embeddings, and a final
LayerNorm. ``__call__`` returns the normalised CLS feature (or class logits when
``num_classes`` is set); :meth:`ViT.encode_tokens` returns every normalised token.
With learnable position embeddings and a 1000-way head, ViT-B/16 at 224 x 224 has
86,567,656 parameters, the published count.

Attention (:func:`dot_product_attention`) computes its logits and softmax in float32 for
every compute dtype. ``attention="auto"`` runs cuDNN's fused (flash) kernel on a GPU for
16-bit compute, which never writes the (heads x tokens x tokens) probabilities to memory,
and XLA's attention elsewhere; ``"xla"`` and ``"cudnn"`` choose one explicitly. The patch
embedding (:class:`PatchEmbedding`) holds a strided convolution's parameters and applies
them as one matrix product. On an H100 (ViT-B/16 MAE, batch 256, bfloat16) cuDNN's
attention took 1.2 ms per decoder block (forward and backward) where XLA's took 4.0, and
the matrix product replaced a 1.8 ms convolution (``benchmarks/step.py``).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POS_EMBEDDINGS = ("learned", "sincos")
ATTENTION = ("auto", "xla", "cudnn")
LN_EPSILON = 1e-6

# name -> (width, depth, heads, mlp_dim)
VIT_SIZES = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
    "micro": (64, 2, 2, 128),  # for tests and CPU demos
}


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """(N, H, W, C) -> (N, (H/p)(W/p), p * p * C)."""
  n, h, w, c = images.shape
  if h % patch_size or w % patch_size:
    raise ValueError(f"image size {(h, w)} must be a multiple of patch_size {patch_size}.")
  gh, gw = h // patch_size, w // patch_size
  x = images.reshape(n, gh, patch_size, gw, patch_size, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, gh * gw, patch_size * patch_size * c)


def unpatchify(patches: jax.Array, patch_size: int, channels: int = 3) -> jax.Array:
  """(N, L, p * p * C) -> (N, H, W, C) for a square grid; the inverse of patchify."""
  n, length, _ = patches.shape
  grid = int(round(length ** 0.5))
  if grid * grid != length:
    raise ValueError(f"the number of patches must be a square; got {length}.")
  x = patches.reshape(n, grid, grid, patch_size, patch_size, channels)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, grid * patch_size, grid * patch_size, channels)


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


def dot_product_attention(query, key, value, mask=None, dropout_rate: float = 0.0, *,
                          implementation: str = "auto", is_causal: bool = False):
  """``softmax(q k^T / sqrt(head_dim)) v`` per head; inputs (N, tokens, heads, head_dim).
  ``is_causal``: token ``i`` attends to tokens ``<= i`` only (the language model's blocks);
  ``mask`` (boolean, broadcast to (N, heads, queries, keys)): the key-value cache's mask of
  one decoding step (:mod:`mssl.models.causal_lm`), always on XLA's attention.

  The ``attention_fn`` of the blocks' ``nn.MultiHeadDotProductAttention`` (same parameters
  as flax's default), through ``jax.nn.dot_product_attention``: logits and softmax in
  float32, the probabilities cast to the compute dtype for the product with ``value``.
  ``implementation``: see the module docstring; ``"auto"`` falls back to XLA where cuDNN
  rejects the shapes even after :func:`_cudnn_attention`'s padding.
  """
  if dropout_rate:
    raise ValueError("mssl's attention takes no attention dropout.")
  if implementation not in ATTENTION:
    raise ValueError(f"attention must be one of {ATTENTION}; got {implementation!r}.")
  if mask is not None:
    return jax.nn.dot_product_attention(query, key, value, mask=mask.astype(bool),
                                        is_causal=is_causal, implementation="xla")
  if implementation == "cudnn" or (implementation == "auto" and jax.default_backend() == "gpu"
                                   and query.dtype in (jnp.bfloat16, jnp.float16)):
    out = _cudnn_attention(query, key, value, is_causal)
    if out is not None:
      return out
    if implementation == "cudnn":
      raise ValueError(f"cuDNN's attention rejects queries of shape {query.shape} and "
                       f"dtype {query.dtype}, padded or not; use attention='xla'.")
  return jax.nn.dot_product_attention(query, key, value, is_causal=is_causal,
                                      implementation="xla")


_REJECTED = (NotImplementedError, RuntimeError, ValueError)


def _cudnn_attention(query, key, value, is_causal: bool = False):
  """cuDNN's fused attention with the least padding (:func:`padded_attention`) it
  accepts, or ``None``: the tokens padded to a multiple of 1, 8 or 64, then the head
  dimension to a multiple of 64 as well. (cuDNN 9 on an H100 rejects the training of
  MAE's decoder, 197 tokens of head dimension 32, as it is and with the head dimension
  padded alone: "Unsupported sequence length".)"""
  for head_multiple, token_multiple in itertools.product((1, 64), (1, 8, 64)):
    try:
      return padded_attention(query, key, value, head_multiple=head_multiple,
                              token_multiple=token_multiple, is_causal=is_causal,
                              implementation="cudnn")
    except _REJECTED:
      continue
  return None


def padded_attention(query, key, value, *, head_multiple: int = 1,
                     token_multiple: int = 1, is_causal: bool = False,
                     implementation: str = "xla"):
  """The same attention with the head dimension zero-padded to a multiple of
  ``head_multiple`` (zeros add nothing to the logits, the extra output columns are
  dropped; the scale stays ``1/sqrt(head_dim)``) and the tokens padded to a multiple of
  ``token_multiple`` (the padding keys masked out through the sequence lengths, the
  padding queries' outputs dropped)."""
  n, length, _, head = query.shape
  pad = [(0, 0), (0, -length % token_multiple), (0, 0), (0, -head % head_multiple)]
  lengths = None
  if length % token_multiple:
    lengths = jnp.full((n,), length, jnp.int32)
  out = jax.nn.dot_product_attention(
      *(jnp.pad(x, pad) for x in (query, key, value)), scale=1.0 / float(np.sqrt(head)),
      query_seq_lengths=lengths, key_value_seq_lengths=lengths, is_causal=is_causal,
      implementation=implementation)
  return out[:, :length, :, :head]


class PatchEmbedding(nn.Module):
  """Non-overlapping ``p x p`` patches -> ``width`` features: a ``p x p``, stride-``p``
  convolution's parameters (``kernel`` (p, p, C, width), ``bias``, flax's initialisers)
  applied as one matrix product on the :func:`patchify`-ed image, whose (row, col,
  channel) order is the kernel's. The same sums as the convolution; cuDNN ran that
  strided convolution at 33 TFLOP/s (1.8 ms for ViT-B/16 at batch 256 on an H100)."""
  width: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    p = self.patch_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (p, p, images.shape[-1], self.width))
    bias = self.param("bias", nn.initializers.zeros, (self.width,))
    patches = patchify(images.astype(self.dtype), p)
    return (patches @ kernel.reshape(-1, self.width).astype(self.dtype)
            + bias.astype(self.dtype))


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
  """Pre-norm block: x + drop_path(attn(LN(x))), then x + drop_path(mlp(LN(x)));
  ``causal``: each token attends to itself and the tokens before it."""
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  attention: str = "auto"
  causal: bool = False
  decode: bool = False  # one token per call, keys and values cached (flax's decode mode)

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
        num_heads=self.num_heads, dtype=self.dtype, decode=self.decode,
        kernel_init=nn.initializers.xavier_uniform(),
        # A decoding step's one query sees the cached keys through flax's cache mask.
        attention_fn=functools.partial(dot_product_attention,
                                       is_causal=self.causal and not self.decode,
                                       implementation=self.attention))(y, y)
    x = x + self._drop_path(y, train)
    y = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype)(x)
    y = MlpBlock(self.mlp_dim, self.dtype)(y)
    return x + self._drop_path(y, train)


class Transformer(nn.Module):
  """A stack of encoder blocks followed by a final LayerNorm (``causal``: a decoder)."""
  depth: int
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False
  attention: str = "auto"
  causal: bool = False
  decode: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    block = nn.remat(EncoderBlock, static_argnums=(2,)) if self.remat else EncoderBlock
    for i in range(self.depth):
      rate = self.drop_path * i / max(1, self.depth - 1)  # linearly increasing
      x = block(self.num_heads, self.mlp_dim, rate, self.dtype, self.attention,
                self.causal, self.decode, name=f"block{i}")(x, train)
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
  attention: str = "auto"

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
    self.patch_embed = PatchEmbedding(self.width, self.patch_size, self.dtype,
                                      name="patch_embed")
    self.cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, self.width))
    num_patches = self.grid ** 2
    if self.pos_embedding == "learned":
      self.pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                            (1, num_patches + 1, self.width))
    else:  # fixed; the CLS position is zero, as in MAE
      self.pos = jnp.asarray(sincos_with_cls(self.grid, self.width))
    self.encoder = Transformer(self.depth, self.num_heads, self.mlp_dim, self.drop_path,
                               self.dtype, self.remat, self.attention, name="encoder")
    if self.num_classes:
      self.head = nn.Dense(self.num_classes, dtype=self.dtype, name="head")

  def embed_patches(self, images):
    """Patch tokens with position embeddings, shape (N, grid^2, width), no CLS."""
    if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
      raise ValueError(f"images must have shape (N, {self.image_size}, {self.image_size}, 3)"
                       f"; got {images.shape}.")
    x = self.patch_embed(images)
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
