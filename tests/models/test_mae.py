"""mssl.models.mae: the masked auto-encoder's size, masking, forward pass, targets and
token gathers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models
from mssl.models.mae import gather_tokens

from helpers import jit_apply, jit_init, param_count


def test_mae_parameter_count():
  # The official MAE ViT-B model has 111,907,840 parameters including its two fixed
  # sin-cos tables (197 x 768 + 197 x 512 = 252,160), which are not parameters here.
  count = param_count(models.mae("base"), (1, 224, 224, 3), jax.random.key(1))
  assert count == 111_907_840 - 252_160


@pytest.mark.parametrize("ratio,patches", [(0.75, 196), (0.75, 64), (0.6, 10), (0.0, 16)])
def test_random_masking_properties(ratio, patches):
  key = jax.random.key(3)
  out = models.random_masking(key, 6, patches, ratio)
  kept = int(round(patches * (1 - ratio)))
  mask = np.asarray(out.mask)
  assert mask.shape == (6, patches)
  np.testing.assert_array_equal(mask.sum(1), patches - kept)
  keep = np.asarray(out.keep_indices)
  assert keep.shape == (6, kept)
  for row in range(6):  # the kept indices are exactly the unmasked patches
    np.testing.assert_array_equal(np.sort(keep[row]), np.flatnonzero(mask[row] == 0))
  if 0 < kept < patches:
    assert len({tuple(np.sort(k)) for k in keep}) > 1  # differs between examples
  again = models.random_masking(key, 6, patches, ratio)
  np.testing.assert_array_equal(again.mask, out.mask)  # reproducible from the key
  other = models.random_masking(jax.random.key(4), 6, patches, ratio)
  assert ratio == 0.0 or not np.array_equal(other.mask, out.mask)


def test_mae_forward():
  model = models.mae("micro", patch_size=8, image_size=32, decoder_width=32,
                     decoder_depth=2, decoder_heads=2)
  x = jnp.asarray(np.random.default_rng(5).uniform(size=(4, 32, 32, 3)), jnp.float32)
  variables = jit_init(model, jax.random.key(0), x, jax.random.key(1))
  out = jit_apply(model, variables, x, jax.random.key(2))
  assert out.pred.shape == out.target.shape == (4, 16, 192)
  assert out.cls.shape == (4, 64)
  np.testing.assert_array_equal(np.asarray(out.mask).sum(1), 12)
  # Targets are normalised per patch.
  np.testing.assert_allclose(np.asarray(out.target).mean(-1), 0.0, atol=1e-4)
  # The CLS feature depends on which patches are visible.
  out2 = jit_apply(model, variables, x, jax.random.key(3))
  assert not np.allclose(out.cls, out2.cls)
  encoded = jit_apply(model, variables, x, method=models.MAE.encode)
  assert encoded.shape == (4, 64)


def test_targets_are_per_patch_normalised(tiny_output):
  target = np.asarray(tiny_output.target)
  np.testing.assert_allclose(target.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(target.var(-1), 1, atol=1e-3)


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
