"""mssl.models.convert: an mssl ResNet's weights, exported under torchvision's names and
layouts, run through an independent NCHW / OIHW forward pass written here (eval-mode BN as
torchvision defines it), give the encoder's features; the key set is torchvision's; the
way back is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.models import ResNet18, ResNet50, convert

from helpers import jit_init
from models.reference import nchw_resnet, timm_vit


def torchvision_keys(blocks, bottleneck: bool, head: bool) -> set:
  """``torchvision.models.resnet18/50().state_dict().keys()``, written from the
  architecture: conv1/bn1, layer1-4 of BasicBlocks (conv1-2, bn1-2) or Bottlenecks
  (conv1-3, bn1-3), a downsample (conv, bn) on the first block of layers 2-4 (and of
  layer1 for a Bottleneck, whose width changes there), fc."""
  def bn(prefix):
    return {f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")}
  keys = {"conv1.weight"} | bn("bn1")
  for layer, count in enumerate(blocks, start=1):
    for i in range(count):
      prefix = f"layer{layer}.{i}"
      for k in range(1, 4 if bottleneck else 3):
        keys |= {f"{prefix}.conv{k}.weight"} | bn(f"{prefix}.bn{k}")
      if i == 0 and (layer > 1 or bottleneck):
        keys |= {f"{prefix}.downsample.0.weight"} | bn(f"{prefix}.downsample.1")
  if head:
    keys |= {"fc.weight", "fc.bias"}
  return keys


def random_variables(model, size, seed):
  """Initialised variables with every parameter and BN statistic moved at random (so a
  swapped mean / variance or scale / bias would show)."""
  variables = jit_init(model, jax.random.key(seed), jnp.zeros((1, size, size, 3)),
                       train=False)
  rng = np.random.default_rng(seed)
  move = lambda x: np.asarray(x) + 0.05 * rng.standard_normal(np.shape(x))
  params = jax.tree_util.tree_map(move, variables["params"])
  stats = jax.tree_util.tree_map(lambda x: np.abs(move(x)) + 0.1,
                                 variables["batch_stats"])
  return params, stats


@pytest.mark.parametrize("name,stem,size", [("resnet18", "cifar", 16),
                                            ("resnet18", "imagenet", 32),
                                            ("resnet50", "imagenet", 32)])
def test_exported_weights_give_the_encoders_features_in_nchw(name, stem, size):
  bottleneck = name == "resnet50"
  blocks = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
  model = (ResNet50 if bottleneck else ResNet18)(stem=stem, width=8)
  params, stats = random_variables(model, size, seed=1)
  state = convert.resnet_to_torchvision(params, stats)
  assert set(state) == torchvision_keys(blocks, bottleneck, head=False)
  assert state["conv1.weight"].shape == ((8, 3, 3, 3) if stem == "cifar" else (8, 3, 7, 7))
  assert state["bn1.num_batches_tracked"].dtype == np.int64
  images = np.random.default_rng(2).standard_normal((3, size, size, 3)).astype(np.float32)
  want = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, images)
  got = jax.jit(lambda s, x: nchw_resnet(s, x, bottleneck=bottleneck, stem=stem,
                                         blocks=blocks))(
      state, np.transpose(images, (0, 3, 1, 2)))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)


def test_the_way_back_is_exact_and_a_head_is_fc():
  model = ResNet18(stem="cifar", width=8, num_classes=5)
  params, stats = random_variables(model, 16, seed=3)
  state = convert.resnet_to_torchvision(params, stats)
  assert set(state) == torchvision_keys((2, 2, 2, 2), False, head=True)
  assert state["fc.weight"].shape == (5, 64)
  back_params, back_stats = convert.resnet_from_torchvision(state)
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  for want, got in ((params, back_params), (stats, back_stats)):
    want, got = flat(want), flat(got)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  with pytest.raises(ValueError, match="not a torchvision ResNet key"):
    convert.resnet_from_torchvision({"blocks.0.attn.qkv.weight": np.zeros(3)})


@pytest.mark.parametrize("pos", ["learned", "sincos"])
def test_exported_vit_gives_the_encoders_features_the_timm_way(pos):
  from mssl.models.vit import ViT, sincos_with_cls
  model = ViT(width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=4,
                      image_size=16, pos_embedding=pos)
  variables = jit_init(model, jax.random.key(5), jnp.zeros((1, 16, 16, 3)))
  rng = np.random.default_rng(6)
  params = jax.tree_util.tree_map(lambda x: np.asarray(x) + 0.05 * rng.standard_normal(
      np.shape(x)), variables["params"])
  table = None if pos == "learned" else sincos_with_cls(4, 64)
  state = convert.vit_to_timm(params, pos_embed=table)
  want_keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
               "norm.weight", "norm.bias"}
  for i in range(2):
    want_keys |= {f"blocks.{i}.{n}.{w}" for n in ("norm1", "norm2", "attn.qkv", "attn.proj",
                                                   "mlp.fc1", "mlp.fc2")
                  for w in ("weight", "bias")}
  assert set(state) == want_keys
  assert state["blocks.0.attn.qkv.weight"].shape == (192, 64)
  images = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
  want = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, images)
  got = jax.jit(lambda s, x: timm_vit(s, x, patch=4, num_heads=4))(
      state, np.transpose(images, (0, 3, 1, 2)))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
  back = convert.vit_from_timm(state, num_heads=4, learned_pos=pos == "learned")
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  want_flat, got_flat = flat(params), flat(back)
  assert want_flat.keys() == got_flat.keys()
  for key in want_flat:
    np.testing.assert_array_equal(got_flat[key], want_flat[key], err_msg=key)
  with pytest.raises(ValueError, match="not a timm ViT encoder's"):
    convert.vit_from_timm({**state, "head.weight": np.zeros((3, 64))}, num_heads=4)
