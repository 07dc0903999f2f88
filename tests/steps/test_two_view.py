"""mssl.steps.two_view: the teacher the state holds and the step updates."""

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
  assert ("ema_params" in state) == ("ema_batch_stats" in state) == has_teacher
  step_fn = two_view.make_train_step(config, network, tx, schedule, 10, 10)
  batch = {"views": tuple(jax.ShapeDtypeStruct((8, 16, 16, 3), np.float32)
                          for _ in range(2)),
           "label": jax.ShapeDtypeStruct((8,), np.int32)}
  new_state, metrics = jax.eval_shape(step_fn, state, batch)
  assert set(new_state) == set(state)
  assert ("ema_momentum" in metrics) == has_teacher
