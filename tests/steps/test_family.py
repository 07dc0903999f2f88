"""mssl.steps.family: every objective's family follows from its registry entry, every family
module has the same face, and that face gives what the trainer, export and validation read
(the encoder's variables and parameters, the position embedding, the checks)."""

import jax
import pytest

from mssl import losses, validation
from mssl.steps import family, masked_image, two_view
from mssl.steps import state as state_lib

from helpers import load_config

FACE = ("NAME", "POS_EMBEDDING", "INIT_FROM", "build_network", "init_variables",
        "make_optimizer", "initial_state", "make_train_step", "encoder_variables",
        "encoder_params", "evaluator_apply", "check_config", "trace_objective",
        "preview_images")


def test_family_follows_from_what_the_objective_consumes():
  got = {o: family.family_name(o) for o in losses.names()}
  assert {o for o, f in got.items() if f == "masked_image"} == {"mmae", "umae", "mae"}
  assert set(family.objectives_of("two_view")) == set(losses.names()) - {"mmae", "umae", "mae"}
  for objective, name in got.items():
    assert family.family_of(objective).NAME == name
    assert (losses.spec(objective).inputs == "single") == (name == "masked_image")
  assert set(family.FAMILY_OF_INPUTS) == set(losses.registry.INPUTS)
  with pytest.raises(ValueError, match="unknown objective 'simclr2'"):
    family.family_of("simclr2")


@pytest.mark.parametrize("module", [two_view, masked_image])
def test_every_family_module_has_the_face(module):
  missing = [name for name in FACE if not hasattr(module, name)]
  assert missing == []
  assert module.POS_EMBEDDING in ("learned", "sincos")


@pytest.mark.parametrize("name,arg,kind", [("quickstart", None, "two_view"),
                                            ("mmae_shapes", None, "masked_image")])
def test_the_face_gives_the_encoder_of_a_state(name, arg, kind):
  """encoder_variables / encoder_params pick the subtrees export and the probes read, from
  a train state as from fresh variables (shapes only: nothing is computed)."""
  config = load_config(name, arg)
  steps = family.family_of(config)
  assert steps.NAME == kind
  network = steps.build_network(config, 10)
  tx, _ = steps.make_optimizer(config, 10, 10)
  variables = jax.eval_shape(lambda: steps.init_variables(network, config.data.image_size, 0))
  state = jax.eval_shape(lambda: steps.initial_state(steps.init_variables(
      network, config.data.image_size, 0), tx, config))
  assert set(state_lib.to_saved(state)) >= {"step", "params", "opt_state", "rng"}
  picked = steps.encoder_variables(state.variables)
  assert set(picked) == ({"params", "batch_stats"} if kind == "two_view" else {"params"})
  assert jax.tree_util.tree_structure(picked) == jax.tree_util.tree_structure(
      steps.encoder_variables(variables))
  encoder = steps.encoder_params(state.params)
  assert encoder is (state.params["encoder"] if kind == "two_view"
                     else state.params["mae"]["encoder"])
  if kind == "two_view":  # only an EMA objective's state holds a teacher
    assert (state.ema_params is not None) == (losses.spec(config.objective).teacher == "ema")


def test_the_masked_family_refuses_init_from_and_a_resnet(tmp_path):
  weights = tmp_path / "w.safetensors"
  weights.write_bytes(b"")
  config = load_config("mmae_shapes")
  config.init_from = str(weights)
  config.model.name = "resnet18"
  with pytest.raises(validation.ConfigError) as info:
    validation.validate(config)
  message = str(info.value)
  assert "config.init_from=" in message and "supported for two-view objectives" in message
  assert "config.model.name='resnet18': objective 'mmae' trains a masked auto-encoder" \
      in message


def test_the_two_view_family_checks_the_views():
  config = load_config("simclr_r18_cifar", "runlocal")
  config.data.num_views = 3
  with pytest.raises(validation.ConfigError, match=r"config.data.num_views=3: objective "
                     r"'simclr' takes exactly 2 views"):
    validation.validate(config)


def test_vit_encoder_has_the_family_position_embedding():
  masked = load_config("mmae_shapes")
  assert family.vit_encoder(masked).pos_embedding == "sincos"
  view = load_config("simclr_r18_cifar", "runlocal")
  view.model.name, view.model.patch_size = "vit_micro", 4
  assert family.vit_encoder(view, drop_path=0.1).pos_embedding == "learned"
