"""Loading a pretrained encoder from a workdir: ``embed(images) -> features``; and its
weights for other frameworks.

    from mssl import export
    embed = export.load_encoder("/path/to/workdir")
    features = embed(images)      # images: float32 in [0, 1], (N, H, W, 3)

    python -m mssl.export --workdir=DIR --format=torchvision --out=r18.safetensors

``export_weights(workdir, format, out)`` (and the command line) writes the encoder under
another framework's names and layouts (:mod:`mssl.models.convert`), as safetensors (no
pickle, no torch needed): ``torchvision`` for ResNet-18/50, ``timm`` for ViT encoders
(``timm.create_model("vit_base_patch16_224", num_classes=0)``, or
``VisionTransformer(**kwargs)`` with the file's ``kwargs`` metadata). In PyTorch::

    from safetensors.torch import load_file
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()      # the encoder has no classifier
    model.load_state_dict(load_file("r18.safetensors"))

(a CIFAR-stem ResNet also needs ``model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)`` and
``model.maxpool = nn.Identity()``; the file's metadata says which). ``from_torchvision``
and ``from_timm`` read such files back into mssl's variables.

The workdir's ``config.json`` rebuilds the network (from its step module: no trainer, no
optimiser) and its newest readable checkpoint supplies the weights (only the parameter
and batch-statistics subtrees are read); the encoder runs in evaluation mode (running
BatchNorm statistics) and returns its pooled features (no projector).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mssl import checkpoint as ckpt_lib
from mssl import workdir as workdir_lib
from mssl.models import convert
from mssl.steps import family
from mssl.steps.common import embed_outputs

# format -> what it exports
FORMATS = {"torchvision": "ResNet-18 / ResNet-50 encoders -> torchvision.models.resnet18 / "
                          "resnet50 state_dict keys (safetensors)",
           "timm": "ViT encoders (two-view runs, M-MAE / U-MAE / MAE) -> timm "
                   "VisionTransformer state_dict keys, num_classes=0 (safetensors)",
           "detectron2": "ResNet-50 / ResNet-18 encoders with the ImageNet stem -> "
                         "detectron2's backbone names, MoCo's conversion (.pkl)"}
TORCHVISION_WIDTH = 64  # torchvision's ResNets have base width 64


class ExportError(ValueError):
  """An export that cannot be made: names the format, the encoder and what is supported."""


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a pretraining workdir.")
  return ml_collections.ConfigDict(workdir_lib.read_json(path))


def downstream_data(config):
  """``(pretraining config, data config)`` of a downstream run (linear_eval, finetune) on
  ``config.pretrained_workdir``: the pretraining run's data fields with this run's
  non-None ones laid over them."""
  pre_config = load_config(config.pretrained_workdir)
  data_config = pre_config.data.copy_and_resolve_references()
  with data_config.unlocked():
    for key, value in config.data.items():
      if value is not None:
        data_config[key] = value
  return pre_config, data_config


def _abstract_variables(config, num_classes: int):
  """``(network, abstract variables)`` of the encoder a run with ``config`` trained: the
  network definition from its family's step module, the shapes from tracing its
  initialiser (no optimiser, no train state, nothing computed)."""
  steps = family.family_of(config)
  network = steps.build_network(config, num_classes)
  variables = jax.eval_shape(lambda: steps.init_variables(network, config.data.image_size,
                                                          config.seed))
  return network, steps.encoder_variables(variables)


def load_variables(workdir: str, step: Optional[int] = None):
  """``(config, network, variables, step)`` of a pretraining run (two-view or masked
  image); ``variables`` holds ``params`` (and ``batch_stats``) and ``network.embed``
  maps images to encoder features.

  Only those subtrees of the checkpointed state are read (not the optimiser state or an
  EMA teacher); the newest checkpoint that reads is used, or ``step``."""
  config = load_config(workdir)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  steps = checkpointer.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints.")
  network, abstract = _abstract_variables(config, load_run_info(workdir)["num_classes"])
  try:
    if step is None:
      found = checkpointer.restore_subtrees_latest(abstract)
      if found is None:
        raise FileNotFoundError(f"no readable checkpoint under {workdir}/checkpoints.")
      step, variables = found
    else:
      variables = checkpointer.restore_subtrees(step, abstract)
  finally:
    checkpointer.close()
  variables.setdefault("batch_stats", {})
  return config, network, variables, step


def load_encoder_params(workdir: str, step: Optional[int] = None):
  """``(ViT encoder parameters, step)`` of a run whose encoder is a ViT: the MAE's encoder
  of a masked-image run, or ``params["encoder"]`` of a two-view run."""
  config, _, variables, step = load_variables(workdir, step)
  return family.family_of(config).encoder_params(variables["params"]), step


def load_run_info(workdir: str) -> dict:
  """What the run derived from its data (``num_classes``, ``total_steps``)."""
  path = os.path.join(workdir, "run.json")
  info = workdir_lib.read_json(path)
  if info is None:
    raise FileNotFoundError(f"{path} not found: {workdir!r} holds no started run.")
  return info


def load_encoder(workdir: str, step: Optional[int] = None,
                 batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
  """``embed(images) -> features`` for the encoder saved in ``workdir``: a pretraining
  workdir, or a folder :func:`export_weights` wrote (its ``model_card.json`` and a
  torchvision or timm file)."""
  if (os.path.exists(os.path.join(workdir, MODEL_CARD))
      and not os.path.exists(os.path.join(workdir, "config.json"))):
    config, features, variables = _exported_encoder(workdir)
  else:
    config, network, variables, _ = load_variables(workdir, step)
    features = lambda v, x: embed_outputs(network)(v, x)["features"]
  apply = jax.jit(features)

  def embed(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must have shape (N, H, W, 3) in [0, 1]; got "
                       f"{images.shape}.")
    out = [np.asarray(apply(variables, jnp.asarray(images[i:i + batch_size])))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32)
  embed.config = config
  return embed


def _exported_encoder(folder: str):
  """``(config, features(variables, images), variables)`` of an export folder: the
  encoder rebuilt from the model card's config, its weights from the card's torchvision or
  timm file."""
  from mssl.models.vit import VIT_SIZES
  from mssl.steps.common import standardize
  from mssl.steps.two_view import build_encoder
  card = workdir_lib.read_json(os.path.join(folder, MODEL_CARD))
  config = ml_collections.ConfigDict(card["config"])
  files = card.get("files", {})
  sincos = family.family_of(config).POS_EMBEDDING == "sincos"
  if "torchvision" in files:
    variables = from_torchvision(os.path.join(folder, files["torchvision"]))
  elif "timm" in files:
    heads = VIT_SIZES[config.model.name[len("vit_"):]][2]
    variables = {"params": from_timm(os.path.join(folder, files["timm"]), heads,
                                     learned_pos=not sincos)}
  else:
    raise FileNotFoundError(f"{folder}/{MODEL_CARD} lists no torchvision or timm file "
                            f"(it lists {sorted(files)}; detectron2's pickle is not read "
                            "back).")
  if sincos:  # the MAE encoder: a ViT with the fixed sin-cos table
    encoder = family.vit_encoder(config)
  else:
    encoder = build_encoder(config.model, config.data.image_size)
  return config, lambda v, x: encoder.apply(v, standardize(x), train=False), variables


def export_weights(workdir: str, format: str, out: str, step: Optional[int] = None) -> dict:
  """Writes the encoder of ``workdir`` (its newest readable checkpoint, or ``step``) to
  ``out`` in ``format`` (:data:`FORMATS`); returns the file's metadata."""
  if format not in FORMATS:
    raise ExportError(f"--format={format!r} is not supported; supported: "
                      + "; ".join(f"{k} ({v})" for k, v in FORMATS.items()) + ".")
  config, _, variables, step = load_variables(workdir, step)
  if format == "timm":
    tensors, metadata = _timm_weights(config, variables, workdir)
  else:
    tensors, metadata = _torchvision_weights(config, variables, workdir, format)
  if format == "detectron2":
    if config.model.stem != "imagenet":
      raise ExportError(f"the encoder of {workdir!r} has the {config.model.stem!r} stem; "
                        "detectron2's ResNets have the ImageNet stem (7x7 convolution and "
                        "max-pool), so --format=detectron2 needs config.model.stem="
                        "'imagenet'.")
    tensors = convert.torchvision_to_detectron2(tensors)
    metadata.update(format="detectron2", architecture="detectron2 ResNet backbone "
                    f"(MODEL.RESNETS.DEPTH={config.model.name[len('resnet'):]})")
  metadata.update({"objective": str(config.get("objective")), "step": str(step),
                   "workdir": os.path.abspath(workdir)})
  folder = os.path.dirname(os.path.abspath(out))
  os.makedirs(folder, exist_ok=True)
  tmp = out + ".tmp"
  if format == "detectron2":  # detectron2 reads a pickle: {"model": {name: array}, ...}
    import pickle
    with open(tmp, "wb") as f:
      pickle.dump({"model": tensors, "__author__": "mssl", "matching_heuristics": True,
                   "mssl_metadata": metadata}, f)
  else:
    from safetensors.numpy import save_file
    save_file(tensors, tmp, metadata=metadata)
  os.replace(tmp, out)  # a kill leaves no half-written file under the name
  write_model_card(workdir, config, step, folder, {format: os.path.basename(out)})
  return metadata


MODEL_CARD = "model_card.json"


def write_model_card(workdir: str, config, step: int, folder: str, files: dict) -> dict:
  """``FOLDER/model_card.json``: what an exported encoder is -- the architecture, the
  objective and its loss block, the steps, the data, the final results (linear probe /
  kNN beside random init and raw pixels, where the run measured them), the mssl version,
  the whole config, and the files exported into the folder (merged with those of earlier
  exports of the same run and checkpoint there; another run's card is replaced)."""
  from importlib import metadata as package_metadata
  path = os.path.join(folder, MODEL_CARD)
  card = workdir_lib.read_json(path) or {}
  if card.get("workdir") != os.path.abspath(workdir) or card.get("step") != int(step):
    card = {}  # the folder held another run's (or checkpoint's) export: a new card
  try:
    version = package_metadata.version("mssl")
  except package_metadata.PackageNotFoundError:
    version = "unknown"
  results = workdir_lib.read_json(os.path.join(workdir, "results.json")) or {}
  card.update({
      "architecture": {k: v for k, v in config.model.items()},
      "objective": config.get("objective"), "loss": dict(config.get("loss", {})),
      "step": int(step), "data": {"dataset": config.data.dataset,
                                  "train_split": config.data.get("train_split"),
                                  "image_size": config.data.image_size},
      "results": {k: v for k, v in results.items() if isinstance(v, (int, float))},
      "mssl_version": version, "workdir": os.path.abspath(workdir),
      "config": json.loads(config.to_json_best_effort()),
      "files": {**card.get("files", {}), **files}})
  workdir_lib.write_json(path, card)
  return card


def _torchvision_weights(config, variables, workdir, format="torchvision"):
  encoder = config.model.name
  if encoder not in ("resnet18", "resnet50"):
    raise ExportError(f"the encoder of {workdir!r} is {encoder!r}, which has no "
                      f"{format} counterpart; --format={format} exports resnet18 and "
                      "resnet50 encoders (--format=timm: ViT encoders).")
  params = variables["params"]["encoder"]
  stats = variables["batch_stats"].get("encoder", {})
  tensors = convert.resnet_to_torchvision(jax.device_get(params), jax.device_get(stats))
  width = int(config.model.get("width", TORCHVISION_WIDTH))
  metadata = {
      "format": "torchvision", "architecture": f"torchvision.models.{encoder}",
      "stem": config.model.stem, "width": str(width),
      "fc": "none (set model.fc = torch.nn.Identity())",
      "input": "NCHW float32 images standardised with ImageNet's mean and std"}
  if config.model.stem == "cifar":
    metadata["conv1"] = ("replaced: nn.Conv2d(3, width, 3, 1, 1, bias=False); maxpool: "
                         "nn.Identity()")
  if width != TORCHVISION_WIDTH:
    metadata["note"] = (f"base width {width}: torchvision's constructors build width "
                        f"{TORCHVISION_WIDTH}; the keys match, the shapes do not")
  return tensors, metadata


TIMM_NAMED = ("tiny", "small", "base", "large")


def _timm_weights(config, variables, workdir):
  from mssl.models.vit import VIT_SIZES, sincos_with_cls
  encoder = config.model.name
  if not encoder.startswith("vit_"):
    raise ExportError(f"the encoder of {workdir!r} is {encoder!r}, which has no timm "
                      "ViT counterpart; --format=timm exports ViT encoders "
                      "(--format=torchvision: ResNet-18/50).")
  size = encoder[len("vit_"):]
  width, depth, heads, mlp_dim = VIT_SIZES[size]
  patch, image = int(config.model.patch_size), int(config.data.image_size)
  steps = family.family_of(config)
  sincos = steps.POS_EMBEDDING == "sincos"
  params = jax.device_get(steps.encoder_params(variables["params"]))
  table = sincos_with_cls(image // patch, width) if sincos else None
  tensors = convert.vit_to_timm(params, pos_embed=table)
  kwargs = dict(img_size=image, patch_size=patch, embed_dim=width, depth=depth,
                num_heads=heads, mlp_ratio=mlp_dim / width, num_classes=0,
                global_pool="token")
  named = (f"vit_{size}_patch16_224" if size in TIMM_NAMED and patch == 16 and image == 224
           else None)
  metadata = {
      "format": "timm", "architecture": "timm.models.vision_transformer.VisionTransformer",
      "kwargs": json.dumps(kwargs), "timm_name": named or "none (build with kwargs)",
      "pos_embed": "fixed 2-D sin-cos (MAE)" if sincos else "learned",
      "input": "NCHW float32 images standardised with ImageNet's mean and std"}
  return tensors, metadata


def from_torchvision(path: str) -> dict:
  """A torchvision ResNet state dict saved as safetensors (by :func:`export_weights`, or
  ``safetensors.torch.save_file(model.state_dict(), path)``) -> ``{"params",
  "batch_stats"}`` of mssl's ResNet of the same depth, stem and width."""
  from safetensors.numpy import load_file
  params, stats = convert.resnet_from_torchvision(load_file(path))
  return {"params": params, "batch_stats": stats}


def from_timm(path: str, num_heads: int, learned_pos: bool = True) -> dict:
  """A timm ``VisionTransformer`` encoder state dict saved as safetensors -> the
  ``params`` of mssl's ViT (``learned_pos=False`` for the sin-cos tables of the
  masked-image encoders, which are not parameters)."""
  from safetensors.numpy import load_file
  return convert.vit_from_timm(load_file(path), num_heads, learned_pos)


def weights_format(path: str) -> str:
  """``"torchvision"`` or ``"timm"``: which state dict a safetensors file holds (from its
  key names; nothing but the header is read)."""
  from safetensors import safe_open
  with safe_open(path, "np") as f:
    keys = set(f.keys())
  if "conv1.weight" in keys:
    return "torchvision"
  if "cls_token" in keys and "patch_embed.proj.weight" in keys:
    return "timm"
  raise ExportError(f"{path!r} holds neither a torchvision ResNet (conv1.weight, layer1..4) "
                    "nor a timm ViT (cls_token, patch_embed, blocks) state dict.")


def init_encoder(variables: dict, path: str, config) -> dict:
  """``variables`` (``params`` and ``batch_stats`` of a two-view network) with the encoder
  replaced by the weights of ``path`` (``config.init_from``: a torchvision ResNet or timm
  ViT state dict in safetensors, e.g. written by :func:`export_weights`, or a supervised
  torchvision model saved with ``safetensors.torch.save_file``). Raises
  :class:`ExportError` naming the tensors whose shapes differ from the encoder's."""
  from mssl.models.vit import VIT_SIZES
  encoder = config.model.name
  if encoder.startswith("vit_"):
    loaded = {"params": from_timm(path, VIT_SIZES[encoder[len("vit_"):]][2])}
  else:
    loaded = from_torchvision(path)
  current = {"params": variables["params"]["encoder"],
             "batch_stats": variables.get("batch_stats", {}).get("encoder", {})}
  flat = lambda tree: {jax.tree_util.keystr(k): np.shape(v)
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  want, got = flat({k: current[k] for k in loaded}), flat(loaded)
  problems = sorted(set(want) ^ set(got)) + sorted(
      k for k in set(want) & set(got) if want[k] != got[k])
  if problems:
    shown = ", ".join(f"{k} (encoder {want.get(k)}, file {got.get(k)})"
                      for k in problems[:4])
    raise ExportError(f"config.init_from={path!r} does not fit config.model "
                      f"({encoder}, width {config.model.get('width')}, stem "
                      f"{config.model.get('stem')}): {len(problems)} tensors differ, e.g. "
                      f"{shown}.")
  out = {"params": dict(variables["params"]),
         "batch_stats": dict(variables.get("batch_stats", {}))}
  out["params"]["encoder"] = jax.tree_util.tree_map(jnp.asarray, loaded["params"])
  if "batch_stats" in loaded:
    out["batch_stats"]["encoder"] = jax.tree_util.tree_map(jnp.asarray,
                                                           loaded["batch_stats"])
  return out


def main(argv=None) -> int:
  import argparse
  import sys
  parser = argparse.ArgumentParser(
      prog="python -m mssl.export",
      description="Write a workdir's encoder in another framework's format.")
  parser.add_argument("--workdir", required=True, help="a pretraining run's workdir")
  parser.add_argument("--format", required=True, help=", ".join(FORMATS))
  parser.add_argument("--out", required=True,
                      help="the file to write (.safetensors; .pkl for detectron2); "
                           "model_card.json goes beside it")
  parser.add_argument("--step", type=int, default=None,
                      help="a checkpoint step (default: the newest readable one)")
  args = parser.parse_args(argv)
  try:
    metadata = export_weights(args.workdir, args.format, args.out, args.step)
  except (ExportError, FileNotFoundError, workdir_lib.WorkdirError) as error:
    sys.stderr.write(f"mssl.export: {error}\n")
    return 1
  what = (metadata["kwargs"] if metadata["format"] == "timm"
          else f"stem {metadata['stem']}, width {metadata['width']}")
  print(f"wrote {args.out}: {metadata['architecture']} ({what}) from step "
        f"{metadata['step']} of {args.workdir}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
