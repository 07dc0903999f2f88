"""mssl.steps.two_view: the teacher the state holds and the step updates, the fixed
predictor learning rate, and the family's fast learning test (with its can-fail case)."""

import jax
import numpy as np
import pytest

from mssl.steps import two_view

from helpers import load_config


@pytest.mark.parametrize("method,has_teacher", [("matrix_ssl", True), ("byol", True),
                                                ("simsiam", False), ("simclr", False)])
def test_ema_teacher_exists_only_for_objectives_that_have_one(method, has_teacher):
  """The registry's teacher kind decides: no EMA copy (and no EMA update per step) for
  objectives whose target is the online network or that have no target branch."""
  config = load_config(f"{method}_r18_cifar", "runlocal")
  config.model.update({"name": "vit_micro", "patch_size": 4})
  config.data.image_size = 16
  network = two_view.build_network(config, 10)
  tx, schedule = two_view.make_optimizer(config, 10, 10)
  state = jax.eval_shape(lambda: two_view.create_state(
      two_view.init_variables(network, 16, 0), tx, 0,
      ema_teacher=two_view.has_ema_teacher(config)))
  assert (state.ema_params is not None) == (state.ema_batch_stats is not None) == has_teacher
  step_fn = two_view.make_train_step(config, network, tx, schedule, 10, 10)
  batch = {"views": tuple(jax.ShapeDtypeStruct((8, 16, 16, 3), np.float32)
                          for _ in range(2)),
           "label": jax.ShapeDtypeStruct((8,), np.int32)}
  new_state, metrics = jax.eval_shape(step_fn, state, batch)
  assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
  assert ("ema_momentum" in metrics) == has_teacher


def _tiny_params():
  ones = lambda: {"kernel": np.ones((2, 2), np.float32)}
  return {"encoder": ones(), "projector": ones(), two_view.PREDICTOR: ones(),
          two_view.CLASSIFIER: ones()}


@pytest.mark.parametrize("predictor_lr", ["schedule", "fixed"])
def test_a_fixed_predictor_lr_keeps_the_peak_while_the_rest_warms_up(predictor_lr):
  """SimSiam's --fix-pred-lr: at step 0 of the warm-up (learning rate 0) the predictor
  already moves at the peak rate, base_lr x B / 256 (SGD's first step: -lr x g, with
  the decoupled weight decay in g); with the schedule it waits like the rest. Without
  it the optimiser state is the two groups it always was (old checkpoints restore)."""
  config = load_config("simsiam_r18_cifar", "runlocal")
  config.batch_size = 512
  config.optimizer.update(name="sgd", base_lr=0.5, weight_decay=0.0, warmup_epochs=1.0,
                          predictor_lr=predictor_lr)
  tx, schedule = two_view.make_optimizer(config, total_steps=100, steps_per_epoch=10)
  params = _tiny_params()
  opt_state = tx.init(params)
  assert set(opt_state.inner_states) == (
      {"ssl", "classifier", "predictor"} if predictor_lr == "fixed" else {"ssl", "classifier"})
  grads = jax.tree_util.tree_map(np.ones_like, params)
  updates, _ = tx.update(grads, opt_state, params)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(updates["encoder"]["kernel"], 0.0)
  want = -1.0 if predictor_lr == "fixed" else 0.0  # 0.5 x 512 / 256 = 1.0
  np.testing.assert_allclose(updates[two_view.PREDICTOR]["kernel"], want, rtol=1e-6)


def test_the_predictor_lr_is_checked_with_the_family():
  from mssl import validation
  config = load_config("simsiam_r18_cifar", "runlocal")
  config.optimizer.predictor_lr = "constant"
  with pytest.raises(validation.ConfigError, match=r"config.optimizer.predictor_lr="
                                                   r"'constant' is not allowed; allowed: "
                                                   r"schedule, fixed"):
    validation.validate(config, device_count=1, process_count=1)
  config = load_config("simclr_r18_cifar", "runlocal")  # no predictor
  config.optimizer.predictor_lr = "fixed"
  with pytest.raises(validation.ConfigError, match="needs a predictor; config.predictor "
                                                   "is None"):
    validation.validate(config, device_count=1, process_count=1)


# ------------------------------------------------------------ the family learns ---------
def _view_retrieval(embed, variables, views) -> float:
  """The fraction of images whose second view's nearest first view (cosine, centred
  features) is its own: what a two-view objective trains for (chance: 1 / batch)."""
  a, b = (np.asarray(embed(variables, v), np.float64) for v in views)
  a, b = a - a.mean(0), b - b.mean(0)
  a /= np.linalg.norm(a, axis=1, keepdims=True)
  b /= np.linalg.norm(b, axis=1, keepdims=True)
  return float(np.mean(np.argmax(b @ a.T, axis=1) == np.arange(len(a))))


def _train_on_one_batch(paired_views, probe_views, steps=40):
  """SimCLR's CPU recipe on a ViT-micro, trained with the family's own step for ``steps``
  steps on one batch (``paired_views``, as the step pairs them); the view retrieval of
  ``probe_views`` before and after."""
  config = load_config("simclr_r18_cifar", f"shapes,steps={steps}")
  config.model.update({"name": "vit_micro", "patch_size": 4})
  config.batch_size, config.optimizer.warmup_epochs = 64, 0.0
  network = two_view.build_network(config, 10)
  tx, schedule = two_view.make_optimizer(config, steps, steps)
  state = two_view.initial_state(two_view.init_variables(network, 16, 0), tx, config)
  step = jax.jit(two_view.make_train_step(config, network, tx, schedule, steps, steps))
  embed = jax.jit(lambda variables, x: network.apply(variables, x, method=network.embed))
  before = _view_retrieval(embed, state.variables, probe_views)
  batch = {"views": paired_views, "label": np.zeros(64, np.int32)}
  for _ in range(steps):
    state, _ = step(state, batch)
  return before, _view_retrieval(embed, state.variables, probe_views)


def _noisy_views(seed=0, noise=0.5):
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=(64, 16, 16, 3))
  return tuple(np.clip(images + noise * rng.normal(size=images.shape), 0, 1)
               .astype(np.float32) for _ in range(2))


@pytest.mark.slow(seconds=15)
def test_the_family_step_learns_to_match_the_views_of_each_image():
  """The two-view family's fast learning test: 40 steps on one batch of 64 images, each
  seen as two views under heavy noise, take the view retrieval from near chance to a
  majority (measured: 1.6% -> 50%; chance is 1.6%). The step must pair each image's views, reach the
  encoder through the heads and keep images apart; the embedded dataset's table
  (benchmarks/learning.py) and the quickstart's learning test cover the rest."""
  views = _noisy_views()
  before, after = _train_on_one_batch(views, views)
  assert before < 0.1 and after > 0.35, (before, after)


@pytest.mark.slow(seconds=15)
def test_the_learning_test_fails_for_a_step_that_pairs_the_wrong_views():
  """The can-fail case: the same 40 steps with the second views shifted by one image
  (a step that pairs views wrongly) teach the wrong pairs; the true pairs stay near
  chance (measured: 6.25%), far under the learning test's margin."""
  first, second = _noisy_views()
  _, after = _train_on_one_batch((first, np.roll(second, 1, axis=0)), (first, second))
  assert after < 0.15, after
