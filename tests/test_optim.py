"""Learning-rate schedule, EMA momentum and the optimisers' weight-decay / LARS masks."""

import logging

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mssl import optim


def values(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


def test_schedule_scales_by_batch_warms_up_then_cosine():
  s = optim.learning_rate_schedule(base_lr=0.3, global_batch=512, total_steps=110,
                                   warmup_steps=10)
  # peak 0.3 x 512 / 256 = 0.6 at the end of warm-up, half of it half-way through each part
  np.testing.assert_allclose(values(s, [0, 5, 10, 60, 110]), [0.0, 0.3, 0.6, 0.3, 0.0],
                             atol=1e-6)
  assert float(s(35)) == pytest.approx(0.3 * (1 + np.cos(np.pi / 4)), rel=1e-5)


def test_schedule_without_batch_scaling_and_with_an_end_value():
  s = optim.learning_rate_schedule(base_lr=0.1, global_batch=4096, total_steps=20,
                                   warmup_steps=0, scale_by_batch=False, end_lr=0.01)
  np.testing.assert_allclose(values(s, [0, 10, 20, 30]), [0.1, 0.055, 0.01, 0.01],
                             rtol=1e-5)


def test_no_warm_up_is_plain_cosine_and_logs_nothing(caplog):
  steps = range(0, 45)
  reference = optax.warmup_cosine_decay_schedule(0.0, 0.5, 0, 40, 0.0)  # logs the ramp
  with caplog.at_level(logging.INFO):
    s = optim.learning_rate_schedule(base_lr=0.5, global_batch=256, total_steps=40,
                                     warmup_steps=0)
    got = values(s, steps)
  np.testing.assert_allclose(got, values(reference, steps), rtol=1e-6, atol=1e-9)
  assert got[0] == pytest.approx(0.5)
  assert "transition_steps" not in caplog.text


def test_warm_up_longer_than_training_is_clipped():
  s = optim.learning_rate_schedule(base_lr=1.0, global_batch=256, total_steps=5,
                                   warmup_steps=50)
  got = values(s, range(6))
  assert got[4] == pytest.approx(1.0) and got[0] == 0.0 and got[5] == pytest.approx(0.0)
  assert np.all(np.diff(got[:5]) > 0)


def test_ema_momentum_goes_from_base_to_one():
  got = [float(optim.ema_momentum(s, base=0.99, total_steps=100)) for s in (0, 50, 100, 200)]
  np.testing.assert_allclose(got, [0.99, 0.995, 1.0, 1.0], rtol=1e-6)


PARAMS = {"dense": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)},
          "norm": {"scale": jnp.full((2,), 2.0)}}
GRADS = {"dense": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.full((2,), 0.5)},
         "norm": {"scale": jnp.full((2,), 0.5)}}


def first_update(tx):
  updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
  return updates


def test_sgd_decays_kernels_only():
  u = first_update(optim.make_optimizer("sgd", 1.0, weight_decay=0.1))
  np.testing.assert_allclose(u["dense"]["kernel"], -(0.5 + 0.1 * 2.0))
  np.testing.assert_allclose(u["dense"]["bias"], -0.5)
  np.testing.assert_allclose(u["norm"]["scale"], -0.5)


def test_lars_adapts_and_decays_kernels_only():
  lr, wd, eta = 0.2, 0.1, 0.001
  u = first_update(optim.make_optimizer("lars", lr, weight_decay=wd, trust_coefficient=eta))
  g = 0.5 + wd * 2.0                                # decayed gradient of each kernel entry
  trust = eta * np.linalg.norm(np.full((2, 2), 2.0)) / np.linalg.norm(np.full((2, 2), g))
  np.testing.assert_allclose(u["dense"]["kernel"], -lr * trust * g, rtol=1e-5)
  np.testing.assert_allclose(u["dense"]["bias"], -lr * 0.5, rtol=1e-6)
  np.testing.assert_allclose(u["norm"]["scale"], -lr * 0.5, rtol=1e-6)


def test_adamw_decays_kernels_only():
  u = first_update(optim.make_optimizer("adamw", 1.0, weight_decay=0.1))
  # Adam's first step is -lr * sign(g); decoupled decay adds -lr * wd * p to kernels
  np.testing.assert_allclose(u["dense"]["kernel"], -(1.0 + 0.1 * 2.0), rtol=1e-5)
  np.testing.assert_allclose(u["dense"]["bias"], -1.0, rtol=1e-5)


def test_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match=r"config.optimizer.name must be one of .*'rmsprop'"):
    optim.make_optimizer("rmsprop", 0.1)
