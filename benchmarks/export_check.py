"""The exported weights in the real libraries: torchvision's ResNets and timm's ViTs.

    python benchmarks/export_check.py --out benchmarks/results/export_check_cpu.json

Needs torch, torchvision and timm (not mssl's dependencies; the test suite checks the
same exports against forward passes written from those libraries' definitions,
``tests/models/reference.py``). For each encoder it moves every mssl parameter and BN
statistic at random, exports it (:mod:`mssl.models.convert`, through safetensors as
``python -m mssl.export`` does), loads it with ``load_state_dict(strict=True)`` into the
library's model, and compares the features on random images with mssl's (eval mode);
then the other way: a model initialised by the library, saved with
``safetensors.torch``, read by ``mssl.export.from_torchvision`` / ``from_timm``.
``--workdir DIR`` adds a trained ResNet workdir, exported as ``python -m mssl.export`` does
(another base width is built from torchvision's own blocks). Writes the largest absolute
differences as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from mssl import export  # noqa: E402
from mssl.models import ResNet18, ResNet50, convert  # noqa: E402
from mssl.models.vit import ViT  # noqa: E402


def moved(tree, rng, positive=False):
  def move(x):
    y = np.asarray(x, np.float32) + 0.05 * rng.standard_normal(np.shape(x)).astype(np.float32)
    return np.abs(y) + 0.1 if positive else y
  return jax.tree_util.tree_map(move, tree)


def torchvision_model(name, stem, width=64):
  """torchvision's ResNet, with a CIFAR stem and another base width where asked (rebuilt
  from torchvision's own blocks: its constructors fix the width at 64)."""
  import torch
  import torchvision
  from torchvision.models import resnet
  model = getattr(torchvision.models, name)()
  model.fc = torch.nn.Identity()
  if width != 64:
    block = resnet.Bottleneck if name == "resnet50" else resnet.BasicBlock
    sizes = (3, 4, 6, 3) if name == "resnet50" else (2, 2, 2, 2)
    model.inplanes = width
    model.conv1 = torch.nn.Conv2d(3, width, 7, 2, 3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(width)
    for i, count in enumerate(sizes):
      setattr(model, f"layer{i + 1}", model._make_layer(block, width * 2 ** i, count,
                                                         stride=1 if i == 0 else 2))
  if stem == "cifar":
    model.conv1 = torch.nn.Conv2d(3, width, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
  return model.eval()


def check_workdir(workdir, rng, folder) -> dict:
  """A trained workdir's ResNet encoder, exported as ``python -m mssl.export`` does and
  loaded into torchvision, against ``mssl.export.load_encoder``'s features."""
  import torch
  from safetensors.torch import load_file
  from mssl.steps.common import standardize
  path = os.path.join(folder, "workdir.safetensors")
  meta = export.export_weights(workdir, "torchvision", path)
  model = torchvision_model(meta["architecture"].rsplit(".", 1)[1], meta["stem"],
                            int(meta["width"]))
  model.load_state_dict(load_file(path), strict=True)
  embed = export.load_encoder(workdir)
  size = int(embed.config.data.image_size)
  images = rng.random((8, size, size, 3)).astype(np.float32)
  want = embed(images)
  nchw = np.transpose(np.asarray(standardize(images), np.float32), (0, 3, 1, 2)).copy()
  with torch.no_grad():
    got = model(torch.from_numpy(nchw)).numpy()
  return {"encoder": f"{workdir} (step {meta['step']}, width {meta['width']})",
          "image_size": size, "export_max_abs_diff": float(np.abs(got - want).max()),
          "feature_scale": float(np.abs(want).max()), "import_max_abs_diff": None}


def check_resnet(name, stem, size, rng, folder) -> dict:
  import torch
  from safetensors.numpy import save_file
  from safetensors.torch import save_file as torch_save
  mssl_model = (ResNet50 if name == "resnet50" else ResNet18)(stem=stem)
  variables = jax.jit(lambda: mssl_model.init(jax.random.key(0),
                                              jnp.zeros((1, size, size, 3)), train=False))()
  params, stats = moved(variables["params"], rng), moved(variables["batch_stats"], rng, True)
  path = os.path.join(folder, f"{name}_{stem}.safetensors")
  save_file(convert.resnet_to_torchvision(params, stats), path)
  from safetensors.torch import load_file
  model = torchvision_model(name, stem)
  model.load_state_dict(load_file(path), strict=True)
  images = rng.standard_normal((4, size, size, 3)).astype(np.float32)
  want = np.asarray(jax.jit(lambda v, x: mssl_model.apply(v, x, train=False))(
      {"params": params, "batch_stats": stats}, images))
  with torch.no_grad():
    got = model(torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy())).numpy()
  # The other way: torchvision's own initialisation, read by mssl.
  back = os.path.join(folder, f"{name}_{stem}_torch.safetensors")
  fresh = torchvision_model(name, stem)
  torch_save({k: v.contiguous() for k, v in fresh.state_dict().items()}, back)
  loaded = export.from_torchvision(back)
  with torch.no_grad():
    torch_out = fresh(torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy())).numpy()
  mssl_out = np.asarray(jax.jit(lambda v, x: mssl_model.apply(v, x, train=False))(
      loaded, images))
  return {"encoder": f"{name} ({stem} stem)", "image_size": size,
          "export_max_abs_diff": float(np.abs(got - want).max()),
          "feature_scale": float(np.abs(want).max()),
          "import_max_abs_diff": float(np.abs(torch_out - mssl_out).max())}


def check_vit(timm_name, width, depth, heads, mlp, rng, folder) -> dict:
  import timm
  import torch
  from safetensors.numpy import save_file
  from safetensors.torch import load_file, save_file as torch_save
  mssl_model = ViT(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=16,
                   image_size=224)
  variables = jax.jit(lambda: mssl_model.init(jax.random.key(0),
                                              jnp.zeros((1, 224, 224, 3))))()
  params = moved(variables["params"], rng)
  path = os.path.join(folder, f"{timm_name}.safetensors")
  save_file(convert.vit_to_timm(params), path)
  model = timm.create_model(timm_name, pretrained=False, num_classes=0).eval()
  model.load_state_dict(load_file(path), strict=True)
  images = rng.standard_normal((2, 224, 224, 3)).astype(np.float32)
  want = np.asarray(jax.jit(lambda p, x: mssl_model.apply({"params": p}, x))(params, images))
  with torch.no_grad():
    got = model(torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy())).numpy()
  back = os.path.join(folder, f"{timm_name}_torch.safetensors")
  fresh = timm.create_model(timm_name, pretrained=False, num_classes=0).eval()
  torch_save({k: v.contiguous() for k, v in fresh.state_dict().items()}, back)
  loaded = export.from_timm(back, num_heads=heads)
  with torch.no_grad():
    torch_out = fresh(torch.from_numpy(np.transpose(images, (0, 3, 1, 2)).copy())).numpy()
  mssl_out = np.asarray(jax.jit(lambda p, x: mssl_model.apply({"params": p}, x))(
      loaded, images))
  return {"encoder": timm_name, "image_size": 224,
          "export_max_abs_diff": float(np.abs(got - want).max()),
          "feature_scale": float(np.abs(want).max()),
          "import_max_abs_diff": float(np.abs(torch_out - mssl_out).max())}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help="JSON file to write")
  parser.add_argument("--workdir", action="append", default=[],
                      help="also a trained ResNet workdir (repeatable)")
  args = parser.parse_args(argv)
  import timm
  import torch
  import torchvision
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as folder:
    rows = [check_resnet("resnet18", "cifar", 32, rng, folder),
            check_resnet("resnet18", "imagenet", 64, rng, folder),
            check_resnet("resnet50", "imagenet", 64, rng, folder),
            check_vit("vit_tiny_patch16_224", 192, 12, 3, 768, rng, folder),
            check_vit("vit_small_patch16_224", 384, 12, 6, 1536, rng, folder)]
    rows += [check_workdir(w, rng, folder) for w in args.workdir]
  for row in rows:  # relative to the largest feature (random BN statistics make them big)
    row["export_max_rel_diff"] = row["export_max_abs_diff"] / row["feature_scale"]
  common.print_table(rows, ["encoder", "image_size", "export_max_abs_diff",
                            "feature_scale", "export_max_rel_diff", "import_max_abs_diff"])
  common.write_json(args.out, {"machine": common.cpu_description(),
                               "torch": torch.__version__,
                               "torchvision": torchvision.__version__,
                               "timm": timm.__version__, "rows": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
