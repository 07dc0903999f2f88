"""mssl.models.resnet, and the encoders built by name (mssl.models.encoder, ResNets and
ViTs alike): published parameter counts, output shapes, zero-init residuals, BatchNorm
statistics under sharding, bfloat16 compute, rematerialisation, bad names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models

from helpers import jit_apply, jit_init, param_count

P = jax.sharding.PartitionSpec


# ------------------------------------------------------------ parameter counts ---------
@pytest.mark.parametrize("name,kwargs,shape,expected", [
    # Published counts (torchvision / timm / the MAE paper's code).
    ("resnet50", dict(num_classes=1000), (1, 224, 224, 3), 25_557_032),
    ("resnet18", dict(num_classes=1000), (1, 224, 224, 3), 11_689_512),
    ("vit_base", dict(num_classes=1000), (1, 224, 224, 3), 86_567_656),
    ("vit_small", dict(num_classes=1000), (1, 224, 224, 3), 22_050_664),
    ("vit_large", dict(num_classes=1000), (1, 224, 224, 3), 304_326_632),
    # Encoders as used for SSL (no classifier), and the CIFAR stems (3x3 stem conv).
    ("resnet50", dict(), (1, 224, 224, 3), 23_508_032),
    ("resnet18", dict(), (1, 224, 224, 3), 11_176_512),
    ("resnet18", dict(stem="cifar"), (1, 32, 32, 3), 11_168_832),
    ("resnet50", dict(stem="cifar"), (1, 32, 32, 3), 23_500_352),
])
def test_published_parameter_counts(name, kwargs, shape, expected):
  assert param_count(models.encoder(name, **kwargs), shape) == expected


# ------------------------------------------------------------ shapes -------------------
@pytest.mark.parametrize("name,kwargs,image,width", [
    ("resnet18", dict(stem="cifar"), 16, 512),
    ("resnet18", dict(stem="imagenet"), 64, 512),
    ("resnet50", dict(stem="cifar", width=8), 16, 256),
    ("vit_micro", dict(patch_size=4, image_size=32), 32, 64),
    ("vit_micro", dict(patch_size=8, image_size=32, pos_embedding="sincos"), 32, 64),
])
def test_encoder_output_shapes(name, kwargs, image, width):
  model = models.encoder(name, **kwargs)
  x = jnp.ones((3, image, image, 3))
  variables = jit_init(model, jax.random.key(0), x, train=False)
  out = jit_apply(model, variables, x, train=False)
  assert out.shape == (3, width) == (3, model.features)
  assert np.all(np.isfinite(np.asarray(out)))


def test_zero_init_residual_makes_blocks_start_as_identity():
  model = models.encoder("resnet18", stem="cifar", zero_init_residual=True)
  variables = jit_init(model, jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
  scales = [v["scale"] for k, v in variables["params"]["stage1_block1"].items()
            if k.startswith("BatchNorm")]
  assert float(jnp.abs(scales[-1]).max()) == 0.0 and float(scales[0].min()) == 1.0


# ------------------------------------------------------------ sharded BatchNorm --------
def test_batchnorm_statistics_are_global_under_sharding(data_mesh):
  model = models.encoder("resnet18", stem="cifar", width=8)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
  variables = jit_init(model, jax.random.key(0), x[:2], train=False)

  @jax.jit
  def forward(variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"])
  want_out, want_state = forward(variables, x)
  sharded = jax.device_put(x, jax.sharding.NamedSharding(data_mesh, P("data")))
  got_out, got_state = forward(variables, sharded)
  np.testing.assert_allclose(got_out, want_out, rtol=1e-4, atol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                                 atol=1e-6),
                         got_state, want_state)
  # And the statistics are those of the whole batch, not of one device's shard.
  stem = forward(variables, x[:2])[1]
  assert not np.allclose(stem["batch_stats"]["stem_bn"]["mean"],
                         want_state["batch_stats"]["stem_bn"]["mean"])


# ------------------------------------------------------------ dtypes, remat ------------
@pytest.mark.parametrize("name,kwargs,image", [
    ("resnet18", dict(stem="cifar", width=16), 32),
    ("vit_micro", dict(patch_size=8, image_size=32), 32),
])
def test_bfloat16_compute_close_to_float32(name, kwargs, image):
  x = jnp.asarray(np.random.default_rng(6).uniform(size=(4, image, image, 3)), jnp.float32)
  f32 = models.encoder(name, **kwargs)
  bf16 = models.encoder(name, dtype=jnp.bfloat16, **kwargs)
  variables = jit_init(f32, jax.random.key(0), x, train=False)
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(
      jax.eval_shape(lambda: bf16.init(jax.random.key(0), x, train=False))))
  want = jit_apply(f32, variables, x, train=False)
  got = jit_apply(bf16, variables, x, train=False)
  assert got.dtype == jnp.bfloat16
  rel = np.linalg.norm(np.asarray(got, np.float32) - want) / np.linalg.norm(want)
  assert rel < 0.05, rel


@pytest.mark.parametrize("name,kwargs", [
    ("resnet18", dict(stem="cifar", width=8)),
    ("vit_micro", dict(patch_size=8, image_size=32)),
])
def test_remat_gives_the_same_gradients(name, kwargs, x64):
  # Compiled, and in float64: the recomputed forward is fused differently from the stored
  # one, so in float32 the gradients that are zero in exact arithmetic (attention's key
  # bias: softmax ignores a shift of a query's logits) are rounding noise and differ by
  # more than 100%. In float64 the two backward passes agree to ~1e-16 (measured).
  size = 16 if name.startswith("resnet") else 32
  x = jnp.asarray(np.random.default_rng(7).uniform(size=(4, size, size, 3)), jnp.float64)
  plain = models.encoder(name, dtype=jnp.float64, **kwargs)
  remat = models.encoder(name, remat=True, dtype=jnp.float64, **kwargs)
  variables = jit_init(plain, jax.random.key(0), x, train=False)

  def grads(model):  # compiled: the backward pass XLA runs, with the blocks recomputed
    def loss(params):
      out = model.apply({**variables, "params": params}, x, train=True,
                        mutable=["batch_stats"])[0]
      return jnp.sum(out ** 2)
    return jax.jit(jax.grad(loss))(variables["params"])
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9,
                                                                 atol=1e-10),
                         grads(plain), grads(remat))


def test_bad_names_and_shapes():
  with pytest.raises(ValueError, match="model name must be one of .*'resnet34'"):
    models.encoder("resnet34")
  with pytest.raises(ValueError, match="stem must be one of"):
    m = models.encoder("resnet18", stem="tiny")
    m.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
  with pytest.raises(ValueError, match=r"images must have shape \(N, 32, 32, 3\)"):
    m = models.encoder("vit_micro", patch_size=8, image_size=32)
    m.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)))
  with pytest.raises(ValueError, match="mask_ratio must be in"):
    models.random_masking(jax.random.key(0), 2, 16, 1.0)
