"""Tests for mssl.models: shapes, published parameter counts, sharded BN, MAE masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models

P = jax.sharding.PartitionSpec


def param_count(module, *inputs, **kwargs):
  """Parameters of a module, counted from shapes only (no compute). Tuple inputs are
  shapes of zero arrays; anything else is passed as it is."""
  args = [jnp.zeros(x) if isinstance(x, tuple) else x for x in inputs]
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))


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


def test_mae_parameter_count():
  # The official MAE ViT-B model has 111,907,840 parameters including its two fixed
  # sin-cos tables (197 x 768 + 197 x 512 = 252,160), which are not parameters here.
  count = param_count(models.mae("base"), (1, 224, 224, 3), jax.random.key(1))
  assert count == 111_907_840 - 252_160


@pytest.mark.parametrize("name,in_dim,expected", [
    # Linear layers (no bias) + 2 BN (scale, bias) + a BN without affine (no params).
    ("matrix_ssl_projector", 2048, 3 * 2048 * 2048 + 2 * 2 * 2048),
    ("matrix_ssl_predictor", 2048, 2048 * 512 + 2 * 512 + 512 * 2048),
    # With biases: in*h + h + BN(h) + h*out + out.
    ("byol_projector", 2048, 2048 * 4096 + 4096 + 2 * 4096 + 4096 * 256 + 256),
    ("byol_predictor", 256, 256 * 4096 + 4096 + 2 * 4096 + 4096 * 256 + 256),
    ("simclr_projector", 512, 512 * 2048 + 2048 + 2 * 2048 + 2048 * 128 + 128),
    ("frossl_projector", 512, 512 * 2048 + 2048 + 2 * 2048 + 2048 * 2048 + 2048
     + 2 * 2048 + 2048 * 1024 + 1024),
])
def test_head_parameter_counts(name, in_dim, expected):
  assert param_count(models.head(name), (2, in_dim)) == expected


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
  variables = model.init(jax.random.key(0), x, train=False)
  out = model.apply(variables, x, train=False)
  assert out.shape == (3, width) == (3, model.features)
  assert np.all(np.isfinite(np.asarray(out)))


def test_heads_output_shapes_and_no_affine_last_bn():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 32)), jnp.float32)
  proj = models.MLPHead(hidden=(16, 16), out=12, bias=False, last_bn=True,
                        last_bn_affine=False)
  variables = proj.init(jax.random.key(0), x)
  out, _ = proj.apply(variables, x, mutable=["batch_stats"])
  assert out.shape == (8, 12)
  assert "out_bn" not in variables["params"] and "out_bn" in variables["batch_stats"]
  # BN without affine in training mode: each output column has mean 0 and variance ~1.
  np.testing.assert_allclose(np.mean(out, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.var(out, 0), 1.0, rtol=1e-3)


def test_zero_init_residual_makes_blocks_start_as_identity():
  model = models.encoder("resnet18", stem="cifar", zero_init_residual=True)
  variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
  scales = [v["scale"] for k, v in variables["params"]["stage1_block1"].items()
            if k.startswith("BatchNorm")]
  assert float(jnp.abs(scales[-1]).max()) == 0.0 and float(scales[0].min()) == 1.0


# ------------------------------------------------------------ sharded BatchNorm --------
def test_batchnorm_statistics_are_global_under_sharding(data_mesh):
  model = models.encoder("resnet18", stem="cifar", width=8)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, 16, 16, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), x[:2], train=False)

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
  stem = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])[1]
  assert not np.allclose(stem["batch_stats"]["stem_bn"]["mean"],
                         want_state["batch_stats"]["stem_bn"]["mean"])


# ------------------------------------------------------------ MAE ----------------------
def test_patchify_roundtrip_and_layout():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 32, 32, 3)), jnp.float32)
  patches = models.patchify(x, 8)
  assert patches.shape == (2, 16, 8 * 8 * 3)
  np.testing.assert_array_equal(models.unpatchify(patches, 8), x)
  # Patch 1 is the second patch of the first row: pixels [0:8, 8:16].
  np.testing.assert_array_equal(patches[0, 1].reshape(8, 8, 3), x[0, 0:8, 8:16])


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
  variables = model.init(jax.random.key(0), x, jax.random.key(1))
  out = model.apply(variables, x, jax.random.key(2))
  assert out.pred.shape == out.target.shape == (4, 16, 192)
  assert out.cls.shape == (4, 64)
  np.testing.assert_array_equal(np.asarray(out.mask).sum(1), 12)
  # Targets are normalised per patch.
  np.testing.assert_allclose(np.asarray(out.target).mean(-1), 0.0, atol=1e-4)
  # The CLS feature depends on which patches are visible.
  out2 = model.apply(variables, x, jax.random.key(3))
  assert not np.allclose(out.cls, out2.cls)
  encoded = model.apply(variables, x, method=models.MAE.encode)
  assert encoded.shape == (4, 64)


# ------------------------------------------------------------ dtypes, remat ------------
@pytest.mark.parametrize("name,kwargs,image", [
    ("resnet18", dict(stem="cifar", width=16), 32),
    ("vit_micro", dict(patch_size=8, image_size=32), 32),
])
def test_bfloat16_compute_close_to_float32(name, kwargs, image):
  x = jnp.asarray(np.random.default_rng(6).uniform(size=(4, image, image, 3)), jnp.float32)
  f32 = models.encoder(name, **kwargs)
  bf16 = models.encoder(name, dtype=jnp.bfloat16, **kwargs)
  variables = f32.init(jax.random.key(0), x, train=False)
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(
      bf16.init(jax.random.key(0), x, train=False)))
  want = f32.apply(variables, x, train=False)
  got = bf16.apply(variables, x, train=False)
  assert got.dtype == jnp.bfloat16
  rel = np.linalg.norm(np.asarray(got, np.float32) - want) / np.linalg.norm(want)
  assert rel < 0.05, rel


@pytest.mark.parametrize("name,kwargs", [
    ("resnet18", dict(stem="cifar", width=8)),
    ("vit_micro", dict(patch_size=8, image_size=32)),
])
def test_remat_gives_the_same_gradients(name, kwargs):
  size = 16 if name.startswith("resnet") else 32
  x = jnp.asarray(np.random.default_rng(7).uniform(size=(4, size, size, 3)), jnp.float32)
  plain, remat = models.encoder(name, **kwargs), models.encoder(name, remat=True, **kwargs)
  variables = plain.init(jax.random.key(0), x, train=False)

  def grads(model):
    def loss(params):
      out = model.apply({**variables, "params": params}, x, train=True,
                        mutable=["batch_stats"])[0]
      return jnp.sum(out ** 2)
    return jax.grad(loss)(variables["params"])
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                                 atol=1e-6),
                         grads(plain), grads(remat))


def test_drop_path_is_random_in_training_only():
  model = models.encoder("vit_micro", patch_size=8, image_size=32, drop_path=0.5)
  x = jnp.ones((8, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  eval_a = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(eval_a, model.apply(variables, x, train=False))
  train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  train_b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, train_b)


def test_bad_names_and_shapes():
  with pytest.raises(ValueError, match="model name must be one of .*'resnet34'"):
    models.encoder("resnet34")
  with pytest.raises(ValueError, match="stem must be one of"):
    m = models.encoder("resnet18", stem="tiny")
    m.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
  with pytest.raises(ValueError, match=r"images must have shape \(N, 32, 32, 3\)"):
    m = models.encoder("vit_micro", patch_size=8, image_size=32)
    m.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)))
  with pytest.raises(ValueError, match="head must be one of"):
    models.head("moco_projector")
  with pytest.raises(ValueError, match="mask_ratio must be in"):
    models.random_masking(jax.random.key(0), 2, 16, 1.0)
