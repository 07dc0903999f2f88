"""What an augmented view is: :class:`ViewConfig` and the named presets (no TensorFlow).

A preset is a tuple of view configs (one entry: every view alike; two entries: asymmetric
views, cycled for V > 2). Presets follow the recipes in ``docs/methods.md``:

==============  ==============================================================
``simclr``      crop 0.08-1, jitter 0.8/0.8/0.8/0.2 (p 0.8), grey 0.2, blur 0.5, flip
``byol``        crop 0.08-1, jitter 0.4/0.4/0.2/0.1 (p 0.8), grey 0.2,
                blur 1.0 / 0.1, solarize 0 / 0.2 (asymmetric), flip
``mocov3``      as ``byol`` with crop 0.2-1 (Matrix-SSL / MEC recipe)
``vicreg``      as ``byol`` (VICReg's published augmentations)
``mae``         crop 0.2-1 + flip only (one view)
``*_cifar``     the same without blur (32 px images)
``grey_small``  crop 0.5-1, brightness/contrast 0.4 (p 0.8), nothing else: grey,
                small images (digits, glyphs, scans) whose classes differ by stroke
                shape, which flips mirror and small crops cut away, and which colour
                operations (saturation, hue, grayscale) leave as they are
``none``        resize only (evaluation-style view)
==============  ==============================================================

Every preset can add a random rotation (``rotation``: the largest angle in degrees).
The host pipeline (:mod:`mssl.data.augment`, tf.data) and the device-side colour
augmentation (:mod:`mssl.data.device_augment`, JAX) both read these.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ViewConfig:
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip: float = 0.5
  jitter: float = 0.8                     # probability of applying colour jitter
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.2
  hue: float = 0.1
  grayscale: float = 0.2
  blur: float = 0.0                       # probability of Gaussian blur
  blur_sigma: tuple[float, float] = (0.1, 2.0)  # in pixels at 224; scaled with size
  solarize: float = 0.0
  rotation: float = 0.0                   # max |angle| in degrees of a random rotation


_SIMCLR = ViewConfig(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur=0.5)
_BYOL = (ViewConfig(blur=1.0, solarize=0.0), ViewConfig(blur=0.1, solarize=0.2))
_MOCOV3 = tuple(dataclasses.replace(v, crop_scale=(0.2, 1.0)) for v in _BYOL)
_MAE = ViewConfig(crop_scale=(0.2, 1.0), jitter=0.0, grayscale=0.0)
_GREY_SMALL = ViewConfig(crop_scale=(0.5, 1.0), flip=0.0, brightness=0.4, contrast=0.4,
                         saturation=0.0, hue=0.0, grayscale=0.0)
_NONE = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=0.0, jitter=0.0,
                   grayscale=0.0)


def _no_blur(views):
  return tuple(dataclasses.replace(v, blur=0.0) for v in views)


PRESETS: dict[str, tuple[ViewConfig, ...]] = {
    "simclr": (_SIMCLR,),
    "byol": _BYOL,
    "mocov3": _MOCOV3,
    "vicreg": _BYOL,
    "mae": (_MAE,),
    "none": (_NONE,),
}
PRESETS.update({f"{k}_cifar": _no_blur(v) for k, v in list(PRESETS.items())
                if k not in ("mae", "none")})
PRESETS["grey_small"] = (_GREY_SMALL,)
# Small crops of multi-crop (SwAV / solo-learn): scale 0.05-0.14.
SMALL_CROP_SCALE = (0.05, 0.14)


def colour_operations(views: tuple[ViewConfig, ...]) -> tuple[str, ...]:
  """The operations of ``views`` that change colour but leave a grey image as it is
  (saturation and hue jitter, grayscale), by field name; empty when none runs."""
  found = []
  for v in views:
    if v.jitter > 0 and v.saturation > 0:
      found.append("saturation")
    if v.jitter > 0 and v.hue > 0:
      found.append("hue")
    if v.grayscale > 0:
      found.append("grayscale")
  return tuple(dict.fromkeys(found))


def preset(name: str, **overrides) -> tuple[ViewConfig, ...]:
  """The views of a named preset, every field optionally overridden for all views (an
  override of None keeps the preset's value)."""
  overrides = {k: v for k, v in overrides.items() if v is not None}
  if name not in PRESETS:
    raise ValueError(f"augmentation preset must be one of {tuple(sorted(PRESETS))}; got "
                     f"{name!r}.")
  fields = {f.name for f in dataclasses.fields(ViewConfig)}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"unknown augmentation field(s) {sorted(unknown)}; allowed: "
                     f"{sorted(fields)}.")
  return tuple(dataclasses.replace(v, **{k: tuple(x) if isinstance(x, list) else x
                                         for k, x in overrides.items()})
               for v in PRESETS[name])
