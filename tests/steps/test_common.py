"""mssl.steps.common: what every step shares (the logging test, the input
standardisation, the gradient norm)."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.steps import common


@pytest.mark.parametrize("step,log_every,total,logged", [
    (0, 2, None, False), (1, 2, None, True), (3, 2, 10, True), (4, 3, 5, True),
    (3, 3, 5, False), (8, 100, -1, False), (99, 100, 0, True)])
def test_logging_step_matches_the_loop(step, log_every, total, logged):
  # mssl.loop.run writes after step s (1-based) when s % log_every == 0 or s == total.
  assert bool(common.logging_step(jnp.int32(step), log_every, total)) is logged


def test_standardize_maps_the_imagenet_mean_to_zero_and_one_std_to_one():
  mean, std = common.IMAGE_MEAN, common.IMAGE_STD
  images = np.stack([np.broadcast_to(mean, (2, 2, 3)),
                     np.broadcast_to(mean + std, (2, 2, 3)), np.zeros((2, 2, 3), np.float32)])
  out = np.asarray(common.standardize(jnp.asarray(images)))
  chex.assert_shape(out, (3, 2, 2, 3))
  chex.assert_trees_all_close(out[0], np.zeros((2, 2, 3)), atol=1e-6)
  chex.assert_trees_all_close(out[1], np.ones((2, 2, 3)), atol=1e-6)
  chex.assert_trees_all_close(out[2, 0, 0], -mean / std, rtol=1e-6)


def test_global_norm_and_the_nan_of_a_skipped_diagnostic():
  tree = {"a": jnp.array([3.0, 4.0]), "b": {"c": jnp.array([[12.0]])}}
  assert float(common.global_norm(tree)) == pytest.approx(13.0)
  for dtype, want in ((jnp.bfloat16, jnp.float32), (jnp.float32, jnp.float32),
                      (jnp.int32, jnp.float32)):
    nan = common.nan_scalar_like(jnp.ones(3, dtype))
    chex.assert_shape(nan, ())
    chex.assert_type(nan, want)
    assert np.isnan(float(nan))
