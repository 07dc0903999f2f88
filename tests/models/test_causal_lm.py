"""mssl.models.causal_lm: causality, tied embeddings, sizes and the dtype of the logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.models import causal_lm

from helpers import jit_apply, jit_init


def tiny(**kw):
  return causal_lm.causal_lm("nano", vocab_size=23, max_length=16, **kw)


def test_a_token_changes_only_the_logits_at_and_after_it():
  model = tiny()
  tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 23)
  variables = jit_init(model, jax.random.key(1), tokens)
  logits = np.asarray(jit_apply(model, variables, tokens))
  assert logits.shape == (2, 12, 23)
  changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % 23)
  other = np.asarray(jit_apply(model, variables, changed))
  np.testing.assert_allclose(other[:, :5], logits[:, :5], rtol=1e-5, atol=1e-6)
  assert np.abs(other[:, 5:] - logits[:, 5:]).max(axis=(0, 2)).min() > 1e-4
  # A shorter prefix gives the same logits as the full sequence (positions 0..k).
  np.testing.assert_allclose(np.asarray(jit_apply(model, variables, tokens[:, :7])),
                             logits[:, :7], rtol=1e-5, atol=1e-6)


def test_output_embeddings_are_tied_and_the_parameter_count_is_the_formula():
  model = tiny()
  tokens = jnp.zeros((1, 16), jnp.int32)
  params = jit_init(model, jax.random.key(0), tokens)["params"]
  width, depth, _, mlp = causal_lm.LM_SIZES["nano"]
  names = set(params)
  assert names == {"embed", "pos_embedding", "decoder"}
  block = 4 * (width * width + width) + 2 * width * mlp + mlp + width + 4 * width
  want = 23 * width + 16 * width + depth * block + 2 * width
  assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == want
  # Tied: the logits are the final features times the token table's transpose.
  features = model.apply({"params": params}, tokens,
                         method=lambda m, t: m.decoder(m.embed(t) + m.pos[:, :16]))
  np.testing.assert_allclose(model.apply({"params": params}, tokens),
                             features @ params["embed"]["embedding"].T, rtol=1e-5,
                             atol=1e-6)


def test_bfloat16_compute():
  model = tiny(dtype=jnp.bfloat16)
  tokens = jnp.ones((2, 8), jnp.int32)
  variables = jit_init(model, jax.random.key(0), tokens)
  logits = jit_apply(model, variables, tokens)
  assert logits.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(logits)))


def test_bad_inputs_are_named():
  model = tiny()
  with pytest.raises(ValueError, match="max_length=16"):
    jit_init(model, jax.random.key(0), jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(ValueError, match="language-model size must be one of"):
    causal_lm.causal_lm("huge", vocab_size=3, max_length=4)


def test_decode_mode_gives_the_full_pass_logits_one_token_at_a_time():
  model = tiny()
  tokens = jax.random.randint(jax.random.key(3), (2, 10), 0, 23)
  params = jit_init(model, jax.random.key(4), tokens)["params"]
  want = np.asarray(jit_apply(model, {"params": params}, tokens))
  decoder = model.clone(decode=True)
  cache = causal_lm.init_cache(decoder, 2)
  step = jax.jit(lambda c, x, t: decoder.apply({"params": params, "cache": c}, x, start=t,
                                               mutable=["cache"]))
  for t in range(10):
    logits, variables = step(cache, tokens[:, t:t + 1], t)
    cache = variables["cache"]
    np.testing.assert_allclose(np.asarray(logits[:, 0]), want[:, t], rtol=1e-4, atol=1e-5)
