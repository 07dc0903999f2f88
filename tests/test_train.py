"""mssl.train: the one entry point picks the trainer of each kind of run and hands it the
run under the workdir's lock (validation before anything is written is in
tests/test_validation.py; the trainers' runs are in tests/trainers/)."""

import importlib

import pytest

from mssl import losses, train
from mssl import workdir as workdir_lib

from helpers import load_config, small


@pytest.mark.parametrize("name,arg,trainer", [
    ("quickstart", None, "two_view"), ("simclr_r18_cifar", "runlocal", "two_view"),
    ("mmae_shapes", None, "masked_image"), ("mmae_shapes", "umae", "masked_image"),
    ("mae_vitb", None, "masked_image"), ("linear_eval", None, "linear_eval"),
    ("finetune", None, "finetune")])
def test_each_config_goes_to_the_trainer_of_its_kind(name, arg, trainer):
  assert train.trainer_module(load_config(name, arg)) == f"mssl.trainers.{trainer}"


def test_every_objective_has_a_trainer_and_every_trainer_an_entry_point():
  config = load_config("quickstart")
  for objective in losses.names():
    config.objective = objective
    kind = "masked_image" if objective in losses.MASKED_IMAGE else "two_view"
    assert train.trainer_module(config) == train.TRAINERS[kind], objective
  config.mode = "linear_eval"  # the mode decides before the objective does
  assert train.trainer_module(config) == "mssl.trainers.linear_eval"
  for kind, module in train.TRAINERS.items():
    assert module == f"mssl.trainers.{kind}"
    assert callable(importlib.import_module(module).train_and_evaluate), module


def test_the_trainer_runs_under_the_workdir_lock_and_not_beside_another_run(
    tfds_dir, tmp_path, monkeypatch):
  calls = []

  def trainer(config, workdir):
    calls.append((workdir, (tmp_path / "run.lock").exists()))
    return {"steps": 0}
  monkeypatch.setattr(importlib.import_module("mssl.trainers.two_view"),
                      "train_and_evaluate", trainer)
  config = small(load_config("quickstart"), tfds_dir)
  with workdir_lib.WorkdirLock(str(tmp_path)):  # another run holds the workdir
    with pytest.raises(workdir_lib.WorkdirError, match="is in use by process"):
      train.train_and_evaluate(config, str(tmp_path))
  assert calls == []
  assert train.train_and_evaluate(config, str(tmp_path)) == {"steps": 0}
  assert calls == [(str(tmp_path), True)]           # the trainer ran holding the lock
  assert not (tmp_path / "run.lock").exists()       # released at the end
