"""Backbones and heads, selected by name from configs.

``encoder(name, **kwargs)`` builds an encoder (images -> pooled features):
``resnet18``, ``resnet50`` (``stem="imagenet" | "cifar"``), ``vit_micro``, ``vit_tiny``,
``vit_small``, ``vit_base``, ``vit_large`` (``patch_size``, ``image_size``, ...).
``mae(encoder_size, **kwargs)`` builds the masked auto-encoder; ``MLPHead`` a projector
or predictor (its widths come from the config); ``CausalLM`` (and
``mssl.models.causal_lm.causal_lm(size, ...)``) the decoder-only language model of the
matrix-cross-entropy demo.
"""

from __future__ import annotations

from mssl.models.causal_lm import LM_SIZES, CausalLM
from mssl.models.heads import MLPHead
from mssl.models.mae import MAE, patchify, random_masking, unpatchify
from mssl.models.resnet import ResNet, ResNet18, ResNet50
from mssl.models.vit import VIT_SIZES, ViT, vit

ENCODERS = ("resnet18", "resnet50") + tuple(f"vit_{s}" for s in VIT_SIZES)


def encoder(name: str, **kwargs):
  """An encoder by config name (raises ValueError listing the known names)."""
  if name == "resnet18":
    return ResNet18(**kwargs)
  if name == "resnet50":
    return ResNet50(**kwargs)
  if name.startswith("vit_") and name[4:] in VIT_SIZES:
    return vit(name[4:], **kwargs)
  raise ValueError(f"model name must be one of {ENCODERS}; got {name!r}.")


def mae(encoder_size: str = "base", **kwargs) -> MAE:
  if encoder_size not in VIT_SIZES:
    raise ValueError(f"MAE encoder size must be one of {tuple(VIT_SIZES)}; got "
                     f"{encoder_size!r}.")
  return MAE(encoder_size=encoder_size, **kwargs)


__all__ = ["ENCODERS", "LM_SIZES", "CausalLM", "MAE", "MLPHead", "ResNet", "ResNet18", "ResNet50",
           "VIT_SIZES", "ViT", "encoder", "mae", "patchify", "random_masking",
           "unpatchify", "vit"]
