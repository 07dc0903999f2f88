"""mssl.models.vit: patches, drop-path, and the attention and patch-embedding
formulations that make the steps fast."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models
from mssl.models.vit import PatchEmbedding, dot_product_attention, padded_attention

from helpers import jit_apply, jit_init


def test_patchify_roundtrip_and_layout():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 32, 32, 3)), jnp.float32)
  patches = models.patchify(x, 8)
  assert patches.shape == (2, 16, 8 * 8 * 3)
  np.testing.assert_array_equal(models.unpatchify(patches, 8), x)
  # Patch 1 is the second patch of the first row: pixels [0:8, 8:16].
  np.testing.assert_array_equal(patches[0, 1].reshape(8, 8, 3), x[0, 0:8, 8:16])


def test_drop_path_is_random_in_training_only():
  model = models.encoder("vit_micro", patch_size=8, image_size=32, drop_path=0.5)
  x = jnp.ones((8, 32, 32, 3))
  variables = jit_init(model, jax.random.key(0), x)
  eval_a = jit_apply(model, variables, x, train=False)
  np.testing.assert_array_equal(eval_a, jit_apply(model, variables, x, train=False))
  forward = jax.jit(lambda key: model.apply(variables, x, train=True,
                                            rngs={"dropout": key}))
  train_a, train_b = forward(jax.random.key(1)), forward(jax.random.key(2))
  assert not np.allclose(train_a, train_b)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("head_multiple,token_multiple", [(1, 1), (1, 8), (64, 1), (64, 64)])
def test_padded_attention_is_the_same_attention(head_multiple, token_multiple, causal):
  keys = jax.random.split(jax.random.key(2), 3)
  q, k, v = (jax.random.normal(key, (2, 13, 3, 8)) for key in keys)
  plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal)
  want = plain(q, k, v)
  loss = lambda fn: lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))
  got = padded_attention(q, k, v, head_multiple=head_multiple,
                         token_multiple=token_multiple, is_causal=causal)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  padded = lambda q, k, v: padded_attention(
      q, k, v, head_multiple=head_multiple, token_multiple=token_multiple,
      is_causal=causal)
  for a, b in zip(jax.grad(loss(padded), argnums=(0, 1, 2))(q, k, v),
                  jax.grad(loss(plain), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vit_attention_is_flax_default_attention():
  keys = jax.random.split(jax.random.key(3), 3)
  q, k, v = (jax.random.normal(key, (2, 9, 4, 16)) for key in keys)
  np.testing.assert_allclose(dot_product_attention(q, k, v),
                             nn.dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="attention must be one of"):
    dot_product_attention(q, k, v, implementation="flash")


def test_causal_attention_is_masked_softmax_attention():
  """``is_causal``: the attention of a lower-triangular mask, written out in numpy."""
  keys = jax.random.split(jax.random.key(4), 3)
  q, k, v = (np.asarray(jax.random.normal(key, (2, 7, 2, 4)), np.float64) for key in keys)
  logits = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(4)
  logits = np.where(np.tril(np.ones((7, 7), bool)), logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  want = np.einsum("nhqk,nkhd->nqhd", weights, v)
  got = dot_product_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)),
                              is_causal=True)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_patch_embedding_is_the_strided_convolution():
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(2, 32, 32, 3)), jnp.float32)
  ours, conv = PatchEmbedding(16, 8), nn.Conv(16, (8, 8), (8, 8), padding="VALID")
  params, conv_params = ours.init(jax.random.key(5), x), conv.init(jax.random.key(5), x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, conv_params)  # same init
  np.testing.assert_allclose(ours.apply(params, x),
                             conv.apply(conv_params, x).reshape(2, 16, 16),
                             rtol=1e-5, atol=1e-6)
