"""What a training pipeline keeps in memory: a split's decoded pixels, its encoded bytes, or
nothing (``config.data.cache``).

``"auto"`` keeps a process's decoded split when its pixels are known to be below
:data:`CACHE_LIMIT_BYTES` (tfds datasets of fixed shape from their info, image folders from
their headers), so small datasets are decoded once. Above the limit it keeps an encoded
split's bytes when those fit (file reads saved; each view then decodes its crop every
epoch), e.g. imagenette's JPEGs (0.3-1.5 GB) but not ImageNet's 140 GB. ``"always"`` and
``"never"`` decide without looking.
"""

from __future__ import annotations

import numpy as np

from mssl.data.split import Split

CACHE_MODES = ("auto", "always", "never")
# cache="auto" keeps a process's decoded split in memory below this many bytes of uint8
# pixels (tfds datasets of fixed shape and image folders alike).
CACHE_LIMIT_BYTES = 2 * 2 ** 30


def caches_pixels(split: Split, cache) -> bool:
  """Whether the split's decoded pixels are kept in memory, ``cache`` being "always",
  "never", or "auto" (when this process's decoded split is known to be below
  :data:`CACHE_LIMIT_BYTES`)."""
  if cache not in CACHE_MODES and not isinstance(cache, bool):
    raise ValueError(f"cache must be one of {CACHE_MODES}; got {cache!r}.")
  if cache != "auto":
    return cache in (True, "always")
  size = split.decoded_bytes
  if size is None and split.num_examples is not None and split.image_shape is not None:
    size = split.num_examples * int(np.prod(split.image_shape))
  return size is not None and size < CACHE_LIMIT_BYTES


def caches_decoded(split: Split, cache) -> bool:
  """Whether training keeps this split's pixels in memory without decoding them first
  (a decoded split whose pixels are cached)."""
  return not split.encoded and caches_pixels(split, cache)


def caches_encoded(split: Split, cache) -> bool:
  """Whether training keeps an encoded split's bytes in memory: under "auto", when its
  pixels are not cached and its bytes are known to fit."""
  return (split.encoded and cache == "auto" and not caches_pixels(split, cache)
          and split.encoded_bytes is not None and split.encoded_bytes < CACHE_LIMIT_BYTES)
