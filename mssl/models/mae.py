"""Masked auto-encoder (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022): ViT encoder on the visible patches, a light decoder predicting pixels.

* :func:`patchify` / :func:`unpatchify` (from :mod:`mssl.models.vit`): images
  (N, H, W, C) <-> patches (N, L, p * p * C), row-major over the patch grid, pixels
  (row, col, channel) within a patch (MAE's layout).
* :func:`random_masking`: per-example uniform noise from an explicit RNG key, argsorted;
  keeps exactly ``round(L * (1 - ratio))`` patches per example, a different set per
  example, reproducible from the key.
* :func:`gather_tokens`: the selection of visible tokens and the decoder's unshuffle.
  Both index with (part of) a permutation, so the gradient is a gather with the inverse
  permutation rather than the scatter-add of a general gather.
* :func:`normalized_targets`: per-patch mean/variance normalised pixels (eps 1e-6).
* :class:`MAE`: ``__call__(images, rng)`` returns the decoder's per-patch pixel
  predictions, the binary mask (1 = masked), the normalised CLS feature of the masked
  forward pass (what M-MAE's regulariser uses) and the patch targets.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mssl.models.vit import Transformer, ViT, VIT_SIZES, patchify, sincos_with_cls
from mssl.models.vit import unpatchify  # noqa: F401  (mssl.models exports it from here)


def normalized_targets(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Each patch's pixels normalised by the patch's own mean and variance."""
  mean = jnp.mean(patches, axis=-1, keepdims=True)
  var = jnp.var(patches, axis=-1, keepdims=True)
  return (patches - mean) / jnp.sqrt(var + eps)


def num_kept(num_patches: int, mask_ratio: float) -> int:
  return int(round(num_patches * (1.0 - mask_ratio)))


class Masking(NamedTuple):
  keep_indices: jax.Array     # (N, K) indices of the visible patches
  restore_indices: jax.Array  # (N, L) inverse permutation (unshuffle)
  mask: jax.Array             # (N, L) 1.0 where the patch is masked
  shuffle_indices: jax.Array  # (N, L) the permutation (visible patches first)


def random_masking(rng: jax.Array, batch: int, num_patches: int,
                   mask_ratio: float) -> Masking:
  """Per-example random masking by argsorting uniform noise (one key for the batch)."""
  if not 0.0 <= mask_ratio < 1.0:
    raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio!r}.")
  keep = num_kept(num_patches, mask_ratio)
  noise = jax.random.uniform(rng, (batch, num_patches))
  shuffle = jnp.argsort(noise, axis=1)
  restore = jnp.argsort(shuffle, axis=1)
  mask = jnp.ones((batch, num_patches)).at[:, :keep].set(0.0)
  mask = jnp.take_along_axis(mask, restore, axis=1)
  return Masking(shuffle[:, :keep], restore, mask, shuffle)


@jax.custom_vjp
def gather_tokens(tokens: jax.Array, indices: jax.Array, inverse: jax.Array) -> jax.Array:
  """``tokens[n, indices[n, k]]``: (N, L, D) -> (N, K, D), where ``indices`` (N, K) are the
  first K entries of a per-example permutation of the L positions and ``inverse`` (N, L)
  is that permutation's inverse. The same values as ``jnp.take_along_axis``; the
  gradient (:func:`_gather_tokens_bwd`) is a gather with ``inverse``."""
  return jnp.take_along_axis(tokens, indices[..., None], axis=1, mode="promise_in_bounds")


def _gather_tokens_fwd(tokens, indices, inverse):
  return gather_tokens(tokens, indices, inverse), inverse


def _gather_tokens_bwd(inverse, grad):
  """``d tokens[n, j] = grad[n, inverse[n, j]]`` where ``inverse[n, j] < K``, else 0:
  position j was selected exactly once, as row ``inverse[n, j]``, or not at all."""
  n, kept, width = grad.shape
  missing = inverse.shape[1] - kept
  if missing:
    grad = jnp.concatenate([grad, jnp.zeros((n, missing, width), grad.dtype)], axis=1)
  return (jnp.take_along_axis(grad, inverse[..., None], axis=1, mode="promise_in_bounds"),
          None, None)


gather_tokens.defvjp(_gather_tokens_fwd, _gather_tokens_bwd)


class MAEOutput(NamedTuple):
  pred: jax.Array     # (N, L, p * p * 3) predicted pixels of every patch
  mask: jax.Array     # (N, L), 1 = masked
  cls: jax.Array      # (N, width): CLS feature of the masked pass after the final norm
  target: jax.Array   # (N, L, p * p * 3) (per-patch normalised if norm_pix_loss)


class MAE(nn.Module):
  """ViT encoder + transformer decoder; see the module docstring."""
  encoder_size: str = "base"
  patch_size: int = 16
  image_size: int = 224
  mask_ratio: float = 0.75
  decoder_width: int = 512
  decoder_depth: int = 8
  decoder_heads: int = 16
  decoder_mlp_ratio: int = 4
  norm_pix_loss: bool = True
  dtype: Any = jnp.float32
  remat: bool = False
  attention: str = "auto"     # see mssl.models.vit.dot_product_attention

  def setup(self):
    width, depth, heads, mlp = VIT_SIZES[self.encoder_size]
    self.encoder = ViT(width=width, depth=depth, num_heads=heads, mlp_dim=mlp,
                       patch_size=self.patch_size, image_size=self.image_size,
                       pos_embedding="sincos", dtype=self.dtype, remat=self.remat,
                       attention=self.attention, name="encoder")
    self.decoder_embed = nn.Dense(self.decoder_width, dtype=self.dtype, name="decoder_embed")
    self.mask_token = self.param("mask_token", nn.initializers.normal(0.02),
                                 (1, 1, self.decoder_width))
    self.decoder_pos = jnp.asarray(sincos_with_cls(self.image_size // self.patch_size,
                                                   self.decoder_width))
    self.decoder = Transformer(self.decoder_depth, self.decoder_heads,
                               self.decoder_width * self.decoder_mlp_ratio,
                               dtype=self.dtype, remat=self.remat,
                               attention=self.attention, name="decoder")
    self.decoder_pred = nn.Dense(self.patch_size ** 2 * 3, dtype=self.dtype,
                                 name="decoder_pred")

  @property
  def features(self) -> int:
    return VIT_SIZES[self.encoder_size][0]

  def encode(self, images, train: bool = False):
    """The unmasked encoder's CLS feature (for probes and fine-tuning)."""
    return self.encoder(images, train)

  def __call__(self, images, rng, train: bool = True) -> MAEOutput:
    tokens = self.encoder.embed_patches(images)
    n, length, _ = tokens.shape
    masking = random_masking(rng, n, length, self.mask_ratio)
    visible = gather_tokens(tokens, masking.keep_indices, masking.restore_indices)
    latent = self.encoder.encode_tokens(visible, train)      # (N, 1 + K, width)
    cls = latent[:, 0]
    x = self.decoder_embed(latent)
    kept = x.shape[1] - 1
    mask_tokens = jnp.broadcast_to(self.mask_token.astype(x.dtype),
                                   (n, length - kept, self.decoder_width))
    shuffled = jnp.concatenate([x[:, 1:], mask_tokens], axis=1)
    unshuffled = gather_tokens(shuffled, masking.restore_indices, masking.shuffle_indices)
    x = jnp.concatenate([x[:, :1], unshuffled], axis=1) + self.decoder_pos.astype(x.dtype)
    x = self.decoder(x, train)
    pred = self.decoder_pred(x)[:, 1:]
    target = patchify(images.astype(jnp.float32), self.patch_size)
    if self.norm_pix_loss:
      target = normalized_targets(target)
    return MAEOutput(pred, masking.mask, cls, target)
