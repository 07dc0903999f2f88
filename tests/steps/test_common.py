"""mssl.steps.common: what every step shares (the logging test, the input
standardisation, the gradient norm)."""

import jax.numpy as jnp
import pytest

from mssl.steps import common


@pytest.mark.parametrize("step,log_every,total,logged", [
    (0, 2, None, False), (1, 2, None, True), (3, 2, 10, True), (4, 3, 5, True),
    (3, 3, 5, False), (8, 100, -1, False), (99, 100, 0, True)])
def test_logging_step_matches_the_loop(step, log_every, total, logged):
  # mssl.loop.run writes after step s (1-based) when s % log_every == 0 or s == total.
  assert bool(common.logging_step(jnp.int32(step), log_every, total)) is logged
