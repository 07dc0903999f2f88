"""mssl.pretraining: a finished workdir keeps its results, and the final table names every
baseline the encoder does not beat."""

import json

import pytest

from mssl import pretraining, train

from helpers import load_config, small


def _finished_run_config(tfds_dir):
  """Two steps of SimCLR on the micro ViT, then the final evaluation (a 1-epoch probe)."""
  config = small(load_config("simclr_r18_cifar", "runlocal"), tfds_dir, total_steps=2,
                 checkpoint_every=2, eval_every=2, **{"model.name": "vit_micro",
                                                      "model.patch_size": 4})
  config.eval.final = True
  config.eval.probe_epochs = 1
  return config


@pytest.mark.slow
def test_finished_workdir_keeps_its_results_unless_asked_to_reevaluate(tfds_dir, tmp_path):
  config = _finished_run_config(tfds_dir)
  first = train.train_and_evaluate(config, str(tmp_path))
  saved = (tmp_path / "results.json").read_text()
  assert first["train_seconds"] > 0 and "pretrained/linear_probe" in first
  again = train.train_and_evaluate(config, str(tmp_path))  # nothing to train or evaluate
  assert (tmp_path / "results.json").read_text() == saved
  assert again == json.loads(saved)
  config.eval.reevaluate = True
  redone = train.train_and_evaluate(config, str(tmp_path))
  assert redone["train_seconds"] == pytest.approx(first["train_seconds"])  # kept
  assert redone["pretrained/knn"] == pytest.approx(first["pretrained/knn"])


def test_final_table_names_every_baseline_the_encoder_does_not_beat():
  final = {"pretrained/linear_probe": 0.8675, "pretrained/knn": 0.40,
           "random_init/linear_probe": 0.8210, "random_init/knn": 0.43,
           "pixels/linear_probe": 0.9135, "pixels/knn": 0.9575}
  table = pretraining.format_results(final)
  assert "  pretrained encoder         86.75%       40.00%" in table
  assert "          raw pixels         91.35%       95.75%" in table
  assert ("note: the pretrained encoder does not beat raw pixels on the linear probe: "
          "86.75% vs 91.35%.") in table
  assert "does not beat random init on the kNN: 40.00% vs 43.00%." in table
  assert "random init on the linear probe" not in table
  final.update({"pretrained/linear_probe": 0.95, "pretrained/knn": 0.96})
  assert "note" not in pretraining.format_results(final)


@pytest.mark.slow
def test_a_kill_during_the_final_evaluation_is_made_good_by_the_rerun(tfds_dir, tmp_path):
  """A workdir trained to the end whose results.json was never written (SIGKILL during the
  final evaluation): the rerun evaluates again and writes complete results, with the
  training time the finished run recorded (it used to write no eval/* metric and
  train_seconds=0.0)."""
  config = _finished_run_config(tfds_dir)
  first = train.train_and_evaluate(config, str(tmp_path))
  (tmp_path / "results.json").unlink()  # as if killed before it was written
  again = train.train_and_evaluate(config, str(tmp_path))
  assert set(again) == set(first)
  assert first["train_seconds"] > 0
  assert again["train_seconds"] == pytest.approx(first["train_seconds"])
  assert again["eval/knn_accuracy"] == pytest.approx(first["eval/knn_accuracy"])
  assert again["pretrained/knn"] == pytest.approx(first["pretrained/knn"])
  assert json.loads((tmp_path / "results.json").read_text()) == pytest.approx(first)
