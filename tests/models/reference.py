"""Independent forward passes of exported weights, written from torchvision's and timm's
definitions (NCHW images, OIHW kernels, PyTorch's (out, in) linear weights): what an
exported state dict computes in those libraries, without torch."""

import jax
import jax.numpy as jnp
import numpy as np


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


def timm_vit(state: dict, images, *, patch: int, num_heads: int, eps: float = 1e-6):
  """timm's VisionTransformer.forward_features()[:, 0] on an exported state dict."""
  hi = jax.lax.Precision.HIGHEST
  x = jax.lax.conv_general_dilated(images, jnp.asarray(state["patch_embed.proj.weight"]),
                                   (patch, patch), "VALID",
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=hi)
  x = x + jnp.asarray(state["patch_embed.proj.bias"])[None, :, None, None]
  n, width = x.shape[0], x.shape[1]
  x = x.reshape(n, width, -1).transpose(0, 2, 1)                  # flatten(2).transpose
  cls = jnp.broadcast_to(jnp.asarray(state["cls_token"]), (n, 1, width))
  x = jnp.concatenate([cls, x], axis=1) + jnp.asarray(state["pos_embed"])

  def norm(x, name):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * state[name + ".weight"] + state[name + ".bias"]

  def linear(x, name):
    return jnp.matmul(x, jnp.asarray(state[name + ".weight"]).T, precision=hi) + \
        state[name + ".bias"]

  depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
  for i in range(depth):
    p = f"blocks.{i}."
    h = norm(x, p + "norm1")
    qkv = linear(h, p + "attn.qkv").reshape(n, -1, 3, num_heads, width // num_heads)
    q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))   # (n, heads, L, d)
    weights = jax.nn.softmax(jnp.matmul(q, k.transpose(0, 1, 3, 2), precision=hi)
                             / np.sqrt(width // num_heads), axis=-1)
    attended = jnp.matmul(weights, v, precision=hi).transpose(0, 2, 1, 3).reshape(n, -1,
                                                                                   width)
    x = x + linear(attended, p + "attn.proj")
    h = jax.nn.gelu(linear(norm(x, p + "norm2"), p + "mlp.fc1"), approximate=False)
    x = x + linear(h, p + "mlp.fc2")
  return norm(x, "norm")[:, 0]
