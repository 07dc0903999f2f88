"""mssl encoders <-> PyTorch state dicts, as name -> numpy array maps (no torch needed).

**torchvision ResNet** (:func:`resnet_to_torchvision`, :func:`resnet_from_torchvision`):
the keys and layouts of ``torchvision.models.resnet18`` / ``resnet50``'s ``state_dict()``:

==========================================  ============================================
mssl (flax)                                  torchvision
==========================================  ============================================
``stem_conv/kernel`` (kh, kw, in, out)       ``conv1.weight`` (out, in, kh, kw): OIHW
``stem_bn`` scale, bias, mean, var           ``bn1.weight/bias/running_mean/running_var``
                                             and ``bn1.num_batches_tracked`` (int64)
``stage{s}_block{i}/Conv_k``, ``BatchNorm_k``  ``layer{s}.{i-1}.conv{k+1}``, ``bn{k+1}``
``stage{s}_block{i}/proj``, ``proj_bn``      ``layer{s}.{i-1}.downsample.0``, ``.1``
``head/kernel`` (in, out), ``head/bias``     ``fc.weight`` (out, in), ``fc.bias``
==========================================  ============================================

An encoder has no ``fc``: load it with ``strict=False`` or after
``model.fc = torch.nn.Identity()``. The CIFAR stem (``stem="cifar"``) is torchvision's
ResNet with ``conv1`` replaced by a 3x3 stride-1 convolution (``nn.Conv2d(3, 64, 3, 1, 1,
bias=False)``) and ``maxpool`` replaced by ``nn.Identity()``. Both frameworks take images
standardised with ImageNet's mean and standard deviation, NCHW in PyTorch.
``num_batches_tracked`` is not kept by flax; it is written as 0 (torchvision reads it
only when BN's momentum is None).

**detectron2 ResNet** (:func:`torchvision_to_detectron2`): the torchvision names renamed
as MoCo's ``convert-pretrain-to-detectron2.py`` does for the paper's COCO protocol (stem
keys under ``stem.``, ``layerN`` -> ``res{N+1}``, ``bnK`` -> ``convK.norm``,
``downsample.0`` / ``.1`` -> ``shortcut`` / ``shortcut.norm``); BN's
``num_batches_tracked`` is left out (detectron2's norms do not read it).

**timm ViT** (:func:`vit_to_timm`, :func:`vit_from_timm`): the keys and layouts of timm's
``VisionTransformer`` (``vit_{tiny,small,base,large}_patch16_224`` with
``num_classes=0``): ``cls_token``, ``pos_embed`` (1, 1 + grid^2, width; a fixed sin-cos
table of an MAE-family encoder is written out), ``patch_embed.proj.weight`` (OIHW) and
``.bias``, ``blocks.N.norm1``, ``blocks.N.attn.qkv`` (query, key and value stacked:
(3 width, width), heads major within each), ``blocks.N.attn.proj``, ``blocks.N.norm2``,
``blocks.N.mlp.fc1`` / ``fc2``, and the final ``norm``. Both use LayerNorm eps 1e-6,
exact GELU and the CLS token's feature after the final norm (timm's ``forward_features``
then ``[:, 0]``, i.e. ``global_pool="token"``).
"""

from __future__ import annotations

import re

import numpy as np

BN_FIELDS = (("scale", "weight", "params"), ("bias", "bias", "params"),
             ("mean", "running_mean", "batch_stats"), ("var", "running_var", "batch_stats"))


def _torch_block_part(name: str) -> str:
  """A block's flax submodule name -> torchvision's (``Conv_1`` -> ``conv2``)."""
  if name == "proj":
    return "downsample.0"
  if name == "proj_bn":
    return "downsample.1"
  kind, index = name.split("_")
  return {"Conv": "conv", "BatchNorm": "bn"}[kind] + str(int(index) + 1)


def _torch_prefix(module: str) -> str:
  if module == "stem_conv":
    return "conv1"
  if module == "stem_bn":
    return "bn1"
  if module == "head":
    return "fc"
  stage, block = re.fullmatch(r"stage(\d+)_block(\d+)", module).groups()
  return f"layer{stage}.{int(block) - 1}"


def resnet_to_torchvision(params: dict, batch_stats: dict) -> dict[str, np.ndarray]:
  """A ResNet's flax ``params`` / ``batch_stats`` -> a torchvision ``state_dict`` (numpy)."""
  out = {}

  def conv(prefix, kernel):
    out[prefix + ".weight"] = np.ascontiguousarray(np.transpose(np.asarray(kernel),
                                                                (3, 2, 0, 1)))

  def bn(prefix, p, s):
    for flax_name, torch_name, tree in BN_FIELDS:
      out[f"{prefix}.{torch_name}"] = np.asarray((p if tree == "params" else s)[flax_name])
    out[prefix + ".num_batches_tracked"] = np.zeros((), np.int64)

  for module, p in params.items():
    prefix = _torch_prefix(module)
    s = batch_stats.get(module, {})
    if module == "stem_conv":
      conv(prefix, p["kernel"])
    elif module == "stem_bn":
      bn(prefix, p, s)
    elif module == "head":
      out["fc.weight"] = np.ascontiguousarray(np.asarray(p["kernel"]).T)
      out["fc.bias"] = np.asarray(p["bias"])
    else:
      for part, q in p.items():
        name = f"{prefix}.{_torch_block_part(part)}"
        if "kernel" in q:
          conv(name, q["kernel"])
        else:
          bn(name, q, s[part])
  return out


def torchvision_to_detectron2(state: dict) -> dict[str, np.ndarray]:
  """torchvision ResNet names -> detectron2's (MoCo's conversion rules, in order)."""
  out = {}
  for key, value in state.items():
    if key.endswith("num_batches_tracked") or key.startswith("fc."):
      continue
    name = key if "layer" in key else "stem." + key
    for t in (1, 2, 3, 4):
      name = name.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
      name = name.replace(f"bn{t}", f"conv{t}.norm")
    name = name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    out[name] = value
  return out


def _flax_block_part(name: str) -> str:
  if name == "downsample.0":
    return "proj"
  if name == "downsample.1":
    return "proj_bn"
  kind, index = re.fullmatch(r"(conv|bn)(\d+)", name).groups()
  return {"conv": "Conv", "bn": "BatchNorm"}[kind] + f"_{int(index) - 1}"


def resnet_from_torchvision(state: dict) -> tuple[dict, dict]:
  """A torchvision ResNet ``state_dict`` (numpy or anything ``np.asarray`` reads) ->
  ``(params, batch_stats)`` of the mssl ResNet with the same names; the inverse of
  :func:`resnet_to_torchvision` (``num_batches_tracked`` is dropped)."""
  params: dict = {}
  stats: dict = {}
  for key, value in state.items():
    value = np.asarray(value)
    *path, leaf = key.split(".")
    if leaf == "num_batches_tracked":
      continue
    if path[0] in ("conv1", "bn1", "fc"):
      module, part = {"conv1": "stem_conv", "bn1": "stem_bn", "fc": "head"}[path[0]], None
    else:
      match = re.fullmatch(r"layer(\d+)", path[0])
      if match is None or len(path) < 3:
        raise ValueError(f"{key!r} is not a torchvision ResNet key.")
      module = f"stage{match.group(1)}_block{int(path[1]) + 1}"
      part = _flax_block_part(".".join(path[2:]))
    p_node = params.setdefault(module, {})
    s_node = stats.setdefault(module, {})
    if part is not None:
      p_node = p_node.setdefault(part, {})
      s_node = s_node.setdefault(part, {})
    if module == "head":
      p_node["kernel" if leaf == "weight" else "bias"] = (value.T if leaf == "weight"
                                                           else value)
    elif value.ndim == 4:
      p_node["kernel"] = np.transpose(value, (2, 3, 1, 0))
    else:
      flax_name, tree = {t: (f, tr) for f, t, tr in BN_FIELDS}[leaf]
      (p_node if tree == "params" else s_node)[flax_name] = value
  stats = _drop_empty(stats)
  return params, stats


def _drop_empty(tree: dict) -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      value = _drop_empty(value)
      if not value:
        continue
    out[key] = value
  return out


def vit_to_timm(params: dict, pos_embed=None) -> dict[str, np.ndarray]:
  """A ViT encoder's flax ``params`` -> a timm ``VisionTransformer`` ``state_dict``.
  ``pos_embed``: the (1, 1 + grid^2, width) position table of an encoder whose table is
  fixed (sin-cos, not a parameter); None takes ``params["pos_embedding"]``."""
  out = {"cls_token": np.asarray(params["cls"]),
         "pos_embed": (np.asarray(params["pos_embedding"]) if pos_embed is None
                       else np.asarray(pos_embed, np.float32))}
  kernel = np.asarray(params["patch_embed"]["kernel"])            # (p, p, C, width)
  out["patch_embed.proj.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
  out["patch_embed.proj.bias"] = np.asarray(params["patch_embed"]["bias"])
  encoder = params["encoder"]
  blocks = sorted((k for k in encoder if k.startswith("block")), key=lambda k: int(k[5:]))
  for i, name in enumerate(blocks):
    b, p = encoder[name], f"blocks.{i}."
    attn = b["MultiHeadDotProductAttention_0"]
    width = np.asarray(attn["query"]["kernel"]).shape[0]
    qkv = [np.asarray(attn[k]["kernel"]).reshape(width, -1) for k in ("query", "key",
                                                                        "value")]
    out[p + "attn.qkv.weight"] = np.ascontiguousarray(np.concatenate(qkv, axis=1).T)
    out[p + "attn.qkv.bias"] = np.concatenate(
        [np.asarray(attn[k]["bias"]).reshape(-1) for k in ("query", "key", "value")])
    out[p + "attn.proj.weight"] = np.ascontiguousarray(
        np.asarray(attn["out"]["kernel"]).reshape(-1, width).T)
    out[p + "attn.proj.bias"] = np.asarray(attn["out"]["bias"])
    for flax_name, timm_name in (("LayerNorm_0", "norm1"), ("LayerNorm_1", "norm2")):
      out[p + timm_name + ".weight"] = np.asarray(b[flax_name]["scale"])
      out[p + timm_name + ".bias"] = np.asarray(b[flax_name]["bias"])
    for flax_name, timm_name in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
      dense = b["MlpBlock_0"][flax_name]
      out[p + f"mlp.{timm_name}.weight"] = np.ascontiguousarray(np.asarray(dense["kernel"]).T)
      out[p + f"mlp.{timm_name}.bias"] = np.asarray(dense["bias"])
  out["norm.weight"] = np.asarray(encoder["final_norm"]["scale"])
  out["norm.bias"] = np.asarray(encoder["final_norm"]["bias"])
  return out


def vit_from_timm(state: dict, num_heads: int, learned_pos: bool = True) -> dict:
  """A timm ``VisionTransformer`` ``state_dict`` -> the flax ``params`` of mssl's ViT with
  ``num_heads`` heads (``learned_pos=False``: the position table is fixed in mssl and
  ``pos_embed`` is not a parameter). The inverse of :func:`vit_to_timm`; keys outside the
  encoder (``head``, ``fc_norm``) are refused."""
  state = {k: np.asarray(v) for k, v in state.items()}
  known = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
           "norm.weight", "norm.bias"}
  unknown = sorted(k for k in state if k not in known and not k.startswith("blocks."))
  if unknown:
    raise ValueError(f"keys {unknown[:5]} are not a timm ViT encoder's (export the model "
                     "with num_classes=0).")
  params = {"cls": state["cls_token"],
            "patch_embed": {"kernel": np.transpose(state["patch_embed.proj.weight"],
                                                   (2, 3, 1, 0)),
                            "bias": state["patch_embed.proj.bias"]}}
  if learned_pos:
    params["pos_embedding"] = state["pos_embed"]
  depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
  encoder = {}
  for i in range(depth):
    p = f"blocks.{i}."
    width = state[p + "attn.proj.weight"].shape[0]
    head_dim = width // num_heads
    q, k, v = np.split(state[p + "attn.qkv.weight"].T, 3, axis=1)
    qb, kb, vb = np.split(state[p + "attn.qkv.bias"], 3)
    attn = {name: {"kernel": w.reshape(width, num_heads, head_dim),
                   "bias": b.reshape(num_heads, head_dim)}
            for name, w, b in (("query", q, qb), ("key", k, kb), ("value", v, vb))}
    attn["out"] = {"kernel": state[p + "attn.proj.weight"].T.reshape(num_heads, head_dim,
                                                                      width),
                   "bias": state[p + "attn.proj.bias"]}
    encoder[f"block{i}"] = {
        "LayerNorm_0": {"scale": state[p + "norm1.weight"], "bias": state[p + "norm1.bias"]},
        "LayerNorm_1": {"scale": state[p + "norm2.weight"], "bias": state[p + "norm2.bias"]},
        "MultiHeadDotProductAttention_0": attn,
        "MlpBlock_0": {f"Dense_{j}": {"kernel": state[p + f"mlp.fc{j + 1}.weight"].T,
                                      "bias": state[p + f"mlp.fc{j + 1}.bias"]}
                       for j in range(2)}}
  encoder["final_norm"] = {"scale": state["norm.weight"], "bias": state["norm.bias"]}
  params["encoder"] = encoder
  return params
