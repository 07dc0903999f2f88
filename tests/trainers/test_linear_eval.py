"""mssl.trainers.linear_eval: the probe's config is the pretraining run's with this run's
fields laid over it, the encoder is the checkpoint's, and the results are saved (the
evaluator itself is replaced here; the real probe runs in tests/test_export.py and
tests/trainers/test_finetune.py)."""

import json

import chex
import jax
import numpy as np

from mssl.eval import evaluator as evaluator_lib
from mssl.trainers import linear_eval

from helpers import load_config, pretraining_workdir


def test_probe_lays_its_fields_over_the_pretraining_config_and_saves_the_results(
    tmp_path, monkeypatch):
  pre_config, _, variables = pretraining_workdir(tmp_path / "pre", step=3)
  seen = {}

  class Evaluator:
    def __init__(self, config, mesh, num_classes, apply):
      seen.update(config=config, num_classes=num_classes)

    def probe(self, probed):
      seen["variables"] = jax.device_get(probed)
      return {"linear_probe": np.float32(0.25), "knn": np.float64(0.5)}

  monkeypatch.setattr(evaluator_lib, "Evaluator", Evaluator)
  config = load_config("linear_eval")
  config.pretrained_workdir = str(tmp_path / "pre")
  config.data.knn_split = "train[:64]"
  config.eval.probe_epochs = 7
  results = linear_eval.train_and_evaluate(config, str(tmp_path / "eval"))
  assert results == {"checkpoint_step": 3, "linear_probe": 0.25, "knn": 0.5}
  assert all(type(v) in (int, float) for v in results.values())
  assert json.loads((tmp_path / "eval" / "results.json").read_text()) == results
  probe_config = seen["config"]
  assert probe_config.data.knn_split == "train[:64]"                   # set here
  assert probe_config.eval.probe_epochs == 7
  for key in ("dataset", "eval_split", "image_size", "eval_crop_fraction"):  # None here
    assert probe_config.data[key] == pre_config.data[key], key
  assert probe_config.data.image_size == 16
  assert probe_config.eval.probe_normalization == pre_config.eval.probe_normalization
  assert probe_config.objective == "simclr" and probe_config.model.name == "vit_micro"
  assert seen["num_classes"] == 10                                     # from run.json
  chex.assert_trees_all_close(seen["variables"]["params"], variables["params"])


def test_probe_has_the_evaluation_datasets_classes(tmp_path, monkeypatch):
  """A probe on another dataset than the pretraining run's (3 classes here, 10 there) is
  built for the evaluation data's classes, not the pretraining run's count."""
  from helpers import write_image_folder
  pretraining_workdir(tmp_path / "pre", step=3)
  root = write_image_folder(tmp_path / "folder", {"train": "abc", "test": "abc"})
  seen = {}

  class Evaluator:
    def __init__(self, config, mesh, num_classes, apply):
      seen.update(num_classes=num_classes)

    def probe(self, variables):
      return {"linear_probe": 0.5, "knn": 0.5}
  monkeypatch.setattr(evaluator_lib, "Evaluator", Evaluator)
  config = load_config("linear_eval")
  config.pretrained_workdir = str(tmp_path / "pre")
  config.data.dataset = f"image_folder:{root}"
  config.data.eval_split = config.data.knn_split = "test"
  linear_eval.train_and_evaluate(config, str(tmp_path / "eval"))
  assert seen["num_classes"] == 3
