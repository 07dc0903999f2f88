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


def nchw_resnet(state: dict, images_nchw, *, bottleneck: bool, stem: str, blocks,
                eps: float = 1e-5):
  """The torchvision ResNet forward pass (eval mode) on an exported state dict."""
  def conv(x, name, stride=1, padding=0):
    return jax.lax.conv_general_dilated(
        x, jnp.asarray(state[name + ".weight"]), (stride, stride),
        [(padding, padding)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST)

  def bn(x, name):
    shape = (1, -1, 1, 1)
    mean, var = (jnp.asarray(state[f"{name}.running_{k}"]).reshape(shape)
                 for k in ("mean", "var"))
    weight, bias = (jnp.asarray(state[f"{name}.{k}"]).reshape(shape)
                    for k in ("weight", "bias"))
    return (x - mean) / jnp.sqrt(var + eps) * weight + bias

  relu = jax.nn.relu
  if stem == "imagenet":
    x = relu(bn(conv(images_nchw, "conv1", 2, 3), "bn1"))
    x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                              [(0, 0), (0, 0), (1, 1), (1, 1)])
  else:  # conv1 replaced by a 3x3 stride-1 convolution, maxpool by Identity
    x = relu(bn(conv(images_nchw, "conv1", 1, 1), "bn1"))
  for layer, count in enumerate(blocks, start=1):
    for i in range(count):
      p = f"layer{layer}.{i}"
      stride = 2 if layer > 1 and i == 0 else 1
      if bottleneck:
        y = relu(bn(conv(x, p + ".conv1"), p + ".bn1"))
        y = relu(bn(conv(y, p + ".conv2", stride, 1), p + ".bn2"))
        y = bn(conv(y, p + ".conv3"), p + ".bn3")
      else:
        y = relu(bn(conv(x, p + ".conv1", stride, 1), p + ".bn1"))
        y = bn(conv(y, p + ".conv2", 1, 1), p + ".bn2")
      if p + ".downsample.0.weight" in state:
        x = bn(conv(x, p + ".downsample.0", stride), p + ".downsample.1")
      x = relu(x + y)
  return jnp.mean(x, axis=(2, 3))


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
