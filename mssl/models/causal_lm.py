"""A small decoder-only transformer: tokens (N, L) -> next-token logits (N, L, V).

Token embeddings, learned absolute position embeddings, the pre-norm blocks of
:mod:`mssl.models.vit` run causally (the same :func:`~mssl.models.vit.dot_product_attention`
path, ``is_causal=True``: position ``k`` sees tokens ``0..k``), a final LayerNorm and tied
output embeddings: ``logits = LN(x) E^T`` with ``E`` the token embedding table (GPT-2's
tying; no separate output matrix). ``logits[:, k]`` predicts ``tokens[:, k + 1]``.

``decode=True`` is flax's autoregressive mode: one token per call, each block's keys and
values cached (the ``"cache"`` collection; :func:`init_cache`), the call's position given
as ``start`` -- what greedy decoding uses (:func:`mssl.steps.language_model.greedy_answers`):
a sequence of L tokens costs L one-token calls instead of L full forward passes.

The size of the matrix-cross-entropy language-model demo (``configs/mce_lm_arith.py``):
``LM_SIZES``: ``"nano"``, 2 blocks of width 64 on a character vocabulary (109k parameters).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mssl.models.vit import Transformer

# name -> (width, depth, heads, mlp_dim)
LM_SIZES = {
    "nano": (64, 2, 2, 256),     # the CPU demo and the tests
    "micro": (128, 4, 4, 512),
    "small": (384, 6, 6, 1536),
}


class CausalLM(nn.Module):
  """Decoder-only transformer language model with tied embeddings."""
  vocab_size: int
  max_length: int
  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 512
  dtype: Any = jnp.float32
  attention: str = "auto"
  decode: bool = False

  def setup(self):
    # In the compute dtype, the output logits too (losses upcast them: mssl.losses.language).
    self.embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                          embedding_init=nn.initializers.normal(0.02), name="embed")
    self.pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                          (1, self.max_length, self.width))
    self.decoder = Transformer(self.depth, self.num_heads, self.mlp_dim, 0.0, self.dtype,
                               attention=self.attention, causal=True, decode=self.decode,
                               name="decoder")

  def __call__(self, tokens, train: bool = False, start=0):
    """Logits of ``tokens`` (N, L) placed at positions ``start .. start + L - 1``."""
    if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.max_length:
      raise ValueError(f"tokens must have shape (N, L) with 1 <= L <= max_length="
                       f"{self.max_length}; got {tokens.shape}.")
    pos = jax.lax.dynamic_slice_in_dim(self.pos, start, tokens.shape[1], axis=1)
    x = self.embed(tokens).astype(self.dtype) + pos.astype(self.dtype)
    x = self.decoder(x, train)
    return self.embed.attend(x)


def init_cache(model: CausalLM, batch: int):
  """The empty key-value cache of ``model`` (``decode=True``) for ``batch`` sequences of
  ``max_length`` tokens (shapes from ``jax.eval_shape``: nothing is computed)."""
  dummy = jnp.zeros((batch, model.max_length), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy))["cache"]
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def causal_lm(size: str, *, vocab_size: int, max_length: int, **kwargs) -> CausalLM:
  """``causal_lm("micro", vocab_size=V, max_length=L)``: a language model of a named size."""
  if size not in LM_SIZES:
    raise ValueError(f"language-model size must be one of {tuple(LM_SIZES)}; got {size!r}.")
  width, depth, heads, mlp_dim = LM_SIZES[size]
  return CausalLM(vocab_size=vocab_size, max_length=max_length, width=width, depth=depth,
                  num_heads=heads, mlp_dim=mlp_dim, **kwargs)
