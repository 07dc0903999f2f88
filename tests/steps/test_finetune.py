"""mssl.steps.finetune: mixup and cutmix mix the targets as they mix the images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.steps import finetune


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixup_and_cutmix_mix_targets_like_images(mixup, cutmix):
  n, size, classes = 8, 16, 4
  labels = jnp.arange(n) % classes
  # Image i is constant with value i: the share of each source is readable per pixel.
  images = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[:, None, None, None],
                            (n, size, size, 3))
  targets = jax.nn.one_hot(labels, classes)
  for seed in range(6):
    mixed, mixed_targets = finetune.mix_batch(
        jax.random.key(seed), images, targets, mixup_alpha=mixup, cutmix_alpha=cutmix)
    mixed, mixed_targets = np.asarray(mixed), np.asarray(mixed_targets)
    np.testing.assert_allclose(mixed_targets.sum(1), 1.0, rtol=1e-6)
    for i in (0, 3):
      j = n - 1 - i
      # mean pixel = lam * i + (1 - lam) * j, so lam is recovered from the image.
      lam = (mixed[i].mean() - j) / (i - j)
      expected = lam * np.asarray(targets[i]) + (1 - lam) * np.asarray(targets[j])
      np.testing.assert_allclose(mixed_targets[i], expected, atol=1e-5)
      if cutmix and not mixup:  # cutmix pixels come from one image or the other
        assert set(np.unique(mixed[i])) <= {float(i), float(j)}
