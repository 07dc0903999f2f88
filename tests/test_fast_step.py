"""Tests for what makes the jitted steps fast: the logging-only diagnostics, the masked
auto-encoder's permutation gathers, the attention and patch-embedding formulations, and
step modules that import without the services' dependencies (TensorFlow, clu, matplotlib).
"""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, load_config
from mssl import matrix
from mssl.steps import common, masked_image
from mssl.models.mae import gather_tokens
from mssl.models.vit import PatchEmbedding, dot_product_attention, padded_attention


def test_step_modules_import_without_tensorflow_clu_or_matplotlib():
  code = ("import sys\n"
          "for name in ('tensorflow', 'tensorflow_datasets', 'clu', 'matplotlib'):\n"
          "  sys.modules[name] = None  # importing it raises ImportError\n"
          "import mssl.steps.two_view, mssl.steps.masked_image, mssl.steps.finetune, mssl.sharding\n"
          "assert 'mssl.data' not in sys.modules and 'mssl.loop' not in sys.modules\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True, env={"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
                                        "PATH": "/usr/bin:/bin"})
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("step,log_every,total,logged", [
    (0, 2, None, False), (1, 2, None, True), (3, 2, 10, True), (4, 3, 5, True),
    (3, 3, 5, False), (8, 100, -1, False), (99, 100, 0, True)])
def test_logging_step_matches_the_loop(step, log_every, total, logged):
  # mssl.loop.run writes after step s (1-based) when s % log_every == 0 or s == total.
  assert bool(common.logging_step(jnp.int32(step), log_every, total)) is logged


def test_effective_rank_is_logged_on_logging_steps_only():
  config = load_config("mmae_shapes")
  config.batch_size = 16
  config.log_every = 2
  network = masked_image.build_network(config)
  tx, schedule = masked_image.make_optimizer(config, 5, 5)
  state = masked_image.create_state(masked_image.init_params(network, 32, 0), tx, 0)
  step = jax.jit(masked_image.make_train_step(config, network, tx, schedule, total_steps=5))
  loss_fn = jax.jit(masked_image.make_loss_fn(config, network))
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(16, 32, 32, 3)), jnp.float32)
  for s in range(5):
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    _, (_, cls) = loss_fn(state["params"], images, key)
    state, metrics = step(state, {"views": (images,)})
    rank = float(metrics["effective_rank_cls"])
    if (s + 1) % 2 == 0 or s + 1 == 5:   # what the loop writes
      np.testing.assert_allclose(rank, float(matrix.effective_rank(cls)), rtol=1e-5)
      assert 1.0 < rank <= 16.0
    else:
      assert np.isnan(rank)
    assert np.isfinite(float(metrics["loss"]))


def test_gather_tokens_is_take_along_axis_with_the_same_gradient():
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.normal(size=(3, 10, 4)), jnp.float32)
  shuffle = jnp.asarray(np.stack([rng.permutation(10) for _ in range(3)]))
  restore = jnp.argsort(shuffle, axis=1)
  weights = jnp.asarray(rng.normal(size=(3, 10, 4)), jnp.float32)
  for indices, inverse in ((shuffle[:, :4], restore), (restore, shuffle)):
    def loss(x, gather):
      out = gather(x)
      return jnp.sum(jnp.sin(out) * weights[:, : out.shape[1]])
    ours = lambda x: gather_tokens(x, indices, inverse)
    plain = lambda x: jnp.take_along_axis(x, indices[..., None], axis=1)
    np.testing.assert_array_equal(ours(tokens), plain(tokens))
    np.testing.assert_allclose(jax.grad(loss)(tokens, ours), jax.grad(loss)(tokens, plain),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("head_multiple,token_multiple", [(1, 1), (1, 8), (64, 1), (64, 64)])
def test_padded_attention_is_the_same_attention(head_multiple, token_multiple):
  keys = jax.random.split(jax.random.key(2), 3)
  q, k, v = (jax.random.normal(key, (2, 13, 3, 8)) for key in keys)
  want = jax.nn.dot_product_attention(q, k, v)
  loss = lambda fn: lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))
  got = padded_attention(q, k, v, head_multiple=head_multiple,
                                 token_multiple=token_multiple)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  padded = lambda q, k, v: padded_attention(
      q, k, v, head_multiple=head_multiple, token_multiple=token_multiple)
  for a, b in zip(jax.grad(loss(padded), argnums=(0, 1, 2))(q, k, v),
                  jax.grad(loss(jax.nn.dot_product_attention), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vit_attention_is_flax_default_attention():
  keys = jax.random.split(jax.random.key(3), 3)
  q, k, v = (jax.random.normal(key, (2, 9, 4, 16)) for key in keys)
  np.testing.assert_allclose(dot_product_attention(q, k, v),
                             nn.dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="attention must be one of"):
    dot_product_attention(q, k, v, implementation="flash")


def test_patch_embedding_is_the_strided_convolution():
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(2, 32, 32, 3)), jnp.float32)
  ours, conv = PatchEmbedding(16, 8), nn.Conv(16, (8, 8), (8, 8), padding="VALID")
  params, conv_params = ours.init(jax.random.key(5), x), conv.init(jax.random.key(5), x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, conv_params)  # same init
  np.testing.assert_allclose(ours.apply(params, x),
                             conv.apply(conv_params, x).reshape(2, 16, 16),
                             rtol=1e-5, atol=1e-6)
