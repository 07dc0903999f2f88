"""mssl.steps.state: the typed train state and its checkpoint layout (the dict of its
fields that runs saved before the state was typed, so that their workdirs restore)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mssl import checkpoint as ckpt_lib
from mssl import loop, sharding
from mssl.steps import family
from mssl.steps import state as state_lib
from mssl.steps.state import TrainState

from fake_job import FakeWriter, fake_config, fake_job
from helpers import load_config

# The keys of the saved dict per kind of run, as runs saved them before the state was
# typed (ce8651f): a checkpoint of any of these must restore.
SAVED_KEYS = {
    "two_view with an EMA teacher": {"step", "params", "batch_stats", "opt_state", "rng",
                                     "ema_params", "ema_batch_stats"},
    "two_view": {"step", "params", "batch_stats", "opt_state", "rng"},
    "masked_image": {"step", "params", "opt_state", "rng"},
}


def test_create_holds_the_core_and_the_fields_given():
  params = {"w": jnp.ones((3,))}
  state = state_lib.create(params, optax.sgd(0.1, momentum=0.9), seed=4, batch_stats={})
  assert int(state.step) == 0 and state.step.dtype == jnp.int32
  np.testing.assert_array_equal(state.rng, jax.random.key_data(jax.random.key(5)))
  assert state.batch_stats == {} and state.ema_params is None
  assert state.variables == {"params": params, "batch_stats": {}}
  assert TrainState(step=0, params=params).variables == {"params": params}


def test_saved_layout_round_trips_and_leaves_out_unset_fields():
  state = state_lib.create({"w": jnp.ones((3,))}, optax.sgd(0.1), seed=0)
  saved = state_lib.to_saved(state)
  assert set(saved) == {"step", "params", "opt_state", "rng"}
  back = state_lib.from_saved(saved)
  assert isinstance(back, TrainState) and back.batch_stats is None
  assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(state)
  with pytest.raises(ValueError, match=r"\['teacher'\].*no fields.*step, params"):
    state_lib.from_saved({**saved, "teacher": 1})


@pytest.mark.parametrize("name,arg,kind", [
    ("quickstart", None, "two_view with an EMA teacher"),
    ("simclr_r18_cifar", "runlocal", "two_view"),
    ("mmae_shapes", None, "masked_image"),
])
def test_each_family_saves_the_layout_of_the_untyped_state(name, arg, kind):
  config = load_config(name, arg)
  steps = family.family_of(config)
  network = steps.build_network(config, 10)
  tx, _ = steps.make_optimizer(config, 10, 10)
  state = jax.eval_shape(lambda: steps.initial_state(steps.init_variables(
      network, config.data.image_size, 0), tx, config))
  assert set(state_lib.to_saved(state)) == SAVED_KEYS[kind]


def test_a_checkpoint_of_the_untyped_state_resumes(tmp_path):
  """A workdir whose checkpoint holds the plain dict (as saved before the state was
  typed) resumes from it into a TrainState: the fake step adds the batch value (= its
  position) to ``w``, so the resumed run's ``w`` tells which state it started from."""
  directory = str(tmp_path / "checkpoints")
  checkpointer = ckpt_lib.Checkpointer(directory)
  mesh = sharding.make_mesh()
  untyped = sharding.replicate(mesh, {"step": jnp.asarray(2, jnp.int32),
                                      "params": {"w": jnp.full((2,), 7.0, jnp.float32)}})
  checkpointer.save(2, untyped, {"data_position": 2})
  checkpointer.close()
  job, mesh = fake_job(total_steps=4)
  outcome = loop.run(fake_config(), str(tmp_path), job, mesh, FakeWriter())
  assert isinstance(outcome.state, TrainState) and int(outcome.state.step) == 4
  np.testing.assert_allclose(np.asarray(outcome.state.params["w"]), [7.0 + 2 + 3] * 2)
