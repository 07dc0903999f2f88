"""mssl.run: the one entry point picks the trainer of each kind of run and hands it the
run under the workdir's lock (validation before anything is written is in
tests/test_validation.py; the trainers' runs are in tests/trainers/)."""

import importlib

import pytest

from mssl import losses, run, validation
from mssl.steps import family
from mssl import workdir as workdir_lib

from helpers import load_config, small


@pytest.mark.parametrize("name,arg,trainer", [
    ("quickstart", None, "pretraining"), ("simclr_r18_cifar", "runlocal", "pretraining"),
    ("mmae_shapes", None, "pretraining"), ("mmae_shapes", "umae", "pretraining"),
    ("mae_vitb", None, "pretraining"), ("linear_eval", None, "linear_eval"),
    ("finetune", None, "finetune"), ("mce_lm_arith", None, "language_model")])
def test_each_config_goes_to_the_trainer_of_its_mode(name, arg, trainer):
  assert run.trainer_module(load_config(name, arg)) == f"mssl.trainers.{trainer}"


def test_every_objective_has_a_family_and_every_trainer_an_entry_point():
  config = load_config("quickstart")
  for objective in losses.names():  # one pretraining trainer; the family builds the step
    config.objective = objective
    assert run.trainer_module(config) == "mssl.trainers.pretraining", objective
    assert family.family_of(config).NAME == family.family_name(objective)
  config.mode = "linear_eval"  # the mode decides
  assert run.trainer_module(config) == "mssl.trainers.linear_eval"
  for mode, module in run.TRAINERS.items():
    assert mode in validation.MODES, mode
    assert callable(importlib.import_module(module).train_and_evaluate), module
  assert set(run.TRAINERS) == set(validation.MODES)


def test_the_trainer_runs_under_the_workdir_lock_and_not_beside_another_run(
    tfds_dir, tmp_path, monkeypatch):
  calls = []

  def trainer(config, workdir):
    calls.append((workdir, (tmp_path / "run.lock").exists()))
    return {"steps": 0}
  monkeypatch.setattr(importlib.import_module("mssl.trainers.pretraining"),
                      "train_and_evaluate", trainer)
  config = small(load_config("quickstart"), tfds_dir)
  with workdir_lib.WorkdirLock(str(tmp_path)):  # another run holds the workdir
    with pytest.raises(workdir_lib.WorkdirError, match="is in use by process"):
      run.train_and_evaluate(config, str(tmp_path))
  assert calls == []
  assert run.train_and_evaluate(config, str(tmp_path)) == {"steps": 0}
  assert calls == [(str(tmp_path), True)]           # the trainer ran holding the lock
  assert not (tmp_path / "run.lock").exists()       # released at the end
