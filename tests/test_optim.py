"""Learning-rate schedule, EMA momentum, the optimisers' weight-decay / LARS masks and the
layer-wise learning-rate decay of fine-tuning."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mssl import models, optim
from mssl.steps import finetune


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


@pytest.mark.parametrize("lr", [0.01, 1.0])
def test_clipped_lars_takes_the_smaller_of_the_trust_rate_and_the_schedule(lr):
  # solo-learn's clip_lr: a kernel learns at min(eta |w| / (|g| + wd |w|), lr).
  wd, eta = 0.1, 0.02
  u = first_update(optim.make_optimizer("lars", lr, weight_decay=wd, trust_coefficient=eta,
                                        clip_lr=True))
  trust = eta * 4.0 / (1.0 + wd * 4.0)              # |w| = 4, |g| = 1 for the 2x2 kernel
  assert (trust > lr) == (lr == 0.01)               # one case on each side of the clip
  np.testing.assert_allclose(u["dense"]["kernel"], -min(trust, lr) * (0.5 + wd * 2.0),
                             rtol=1e-5)
  np.testing.assert_allclose(u["dense"]["bias"], -lr * 0.5, rtol=1e-6)
  np.testing.assert_allclose(u["norm"]["scale"], -lr * 0.5, rtol=1e-6)


def test_clipped_lars_follows_the_schedule_and_keeps_unscaled_momentum():
  # Two steps on a schedule 0 -> 0.5: step 0 at lr 0 moves nothing; step 1's buffer holds
  # m * d0 + d1 (d = the clipped, decayed gradient) and moves by lr_1 times it.
  wd, eta, m = 0.1, 0.02, 0.9
  tx = optim.make_optimizer("lars", lambda count: 0.5 * count, weight_decay=wd,
                            trust_coefficient=eta, momentum=m, clip_lr=True)
  state = tx.init(PARAMS)
  u0, state = tx.update(GRADS, state, PARAMS)
  u1, _ = tx.update(GRADS, state, PARAMS)
  np.testing.assert_allclose(u0["dense"]["kernel"], 0.0)
  d0 = 0.5 + wd * 2.0                               # lr 0: the clip is 1
  d1 = min(eta * 4.0 / (1.0 + wd * 4.0) / 0.5, 1.0) * (0.5 + wd * 2.0)
  np.testing.assert_allclose(u1["dense"]["kernel"], -0.5 * (m * d0 + d1), rtol=1e-5)
  np.testing.assert_allclose(u1["dense"]["bias"], -0.5 * (m * 0.5 + 0.5), rtol=1e-6)


def test_clip_lr_is_for_lars_only():
  with pytest.raises(ValueError, match=r"clip_lr=True applies to lars only.*'sgd'"):
    optim.make_optimizer("sgd", 0.1, clip_lr=True)


def test_adamw_decays_kernels_only():
  u = first_update(optim.make_optimizer("adamw", 1.0, weight_decay=0.1))
  # Adam's first step is -lr * sign(g); decoupled decay adds -lr * wd * p to kernels
  np.testing.assert_allclose(u["dense"]["kernel"], -(1.0 + 0.1 * 2.0), rtol=1e-5)
  np.testing.assert_allclose(u["dense"]["bias"], -1.0, rtol=1e-5)


def test_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match=r"config.optimizer.name must be one of .*'rmsprop'"):
    optim.make_optimizer("rmsprop", 0.1)


# ------------------------------------------------------------ layer decay --------------
def test_layer_decay_multipliers_of_vit_base():
  classifier = finetune.Classifier(models.vit("base", patch_size=16, image_size=224,
                                              pos_embedding="sincos"), 1000)
  shapes = jax.eval_shape(lambda: classifier.init(jax.random.key(0),
                                                  jnp.zeros((1, 224, 224, 3))))["params"]
  mult = optim.layer_decay_multipliers(shapes, depth=12, decay=0.65)
  assert mult["encoder"]["patch_embed"]["kernel"] == pytest.approx(0.65 ** 13)
  assert mult["encoder"]["cls"] == pytest.approx(0.65 ** 13)
  blocks = mult["encoder"]["encoder"]
  assert blocks["block0"]["MlpBlock_0"]["Dense_0"]["kernel"] == pytest.approx(0.65 ** 12)
  assert blocks["block5"]["LayerNorm_0"]["scale"] == pytest.approx(0.65 ** 7)
  assert blocks["block11"]["MultiHeadDotProductAttention_0"]["query"]["kernel"] == \
      pytest.approx(0.65)
  assert blocks["final_norm"]["scale"] == 1.0
  assert mult["head"]["kernel"] == 1.0
  no_decay = optim.decay_mask(shapes, exclude=finetune.NO_DECAY)
  assert not no_decay["encoder"]["cls"]
  assert not no_decay["encoder"]["encoder"]["block0"]["LayerNorm_0"]["scale"]
  assert no_decay["encoder"]["patch_embed"]["kernel"] and no_decay["head"]["kernel"]


def test_layer_decay_scales_each_update():
  params = {"patch_embed": {"kernel": jnp.ones((2, 2))},
            "encoder": {"block0": {"w": jnp.ones((2, 2))}, "block1": {"w": jnp.ones((2, 2))}},
            "head": {"kernel": jnp.ones((2, 2))}}
  tx = optax_sgd_with_decay(params, decay=0.5, depth=2)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  got = {k: float(jnp.ravel(v)[0]) for k, v in
         (("embed", updates["patch_embed"]["kernel"]),
          ("b0", updates["encoder"]["block0"]["w"]),
          ("b1", updates["encoder"]["block1"]["w"]), ("head", updates["head"]["kernel"]))}
  assert got == pytest.approx({"embed": -0.125, "b0": -0.25, "b1": -0.5, "head": -1.0})


def optax_sgd_with_decay(params, *, decay, depth):
  import optax
  return optax.chain(optax.sgd(1.0),
                     optim.scale_by_multipliers(
                         optim.layer_decay_multipliers(params, depth, decay)))
