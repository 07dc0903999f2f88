"""mssl.trainers.language_model: the seeded batch order, input that restarts at any
position, and a run of configs/mce_lm_arith.py that trains, evaluates and resumes to the
parameters of an uninterrupted run."""

import json

import numpy as np
import pytest

from mssl import run
from mssl.data import arithmetic
from mssl.trainers import language_model

from helpers import flat, load_config


def test_batch_order_is_a_fresh_permutation_each_epoch_and_seeded():
  order = language_model.batch_order(10, 4, seed=3, steps=7)  # 28 rows: 2.8 epochs
  assert order.shape == (7, 4)
  rows = order.reshape(-1)
  assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))
  assert not np.array_equal(rows[:10], rows[10:20])
  np.testing.assert_array_equal(order, language_model.batch_order(10, 4, seed=3, steps=7))
  assert not np.array_equal(order, language_model.batch_order(10, 4, seed=4, steps=7))
  # A longer run begins with the same batches.
  np.testing.assert_array_equal(order, language_model.batch_order(10, 4, 3, steps=12)[:7])


def test_the_input_restarts_at_any_position():
  config = load_config("mce_lm_arith", "runlocal")
  _, tokens, _, _ = language_model.build(config)
  make = language_model.make_dataset_factory(config, tokens, total_steps=6)
  from_start = list(make(0).as_numpy_iterator())
  assert len(from_start) == 6
  from_four = list(make(4).as_numpy_iterator())
  for got, want in zip(from_four, from_start[4:]):
    for key in ("tokens", "mask"):
      np.testing.assert_array_equal(got[key], want[key])
  batch = from_start[0]
  assert batch["tokens"].shape == (16, arithmetic.PROMPT_LENGTH + arithmetic.ANSWER_LENGTH)
  np.testing.assert_array_equal(batch["mask"], arithmetic.answer_mask(batch["tokens"]))


def saved_params(workdir, step):
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as reader:
    return flat(reader.restore(workdir / "checkpoints" / str(step) / "state")["params"])


@pytest.mark.slow(seconds=45)
def test_a_run_trains_evaluates_and_resumes_to_the_uninterrupted_parameters(tmp_path):
  config = load_config("mce_lm_arith", "runlocal")
  results = run.train_and_evaluate(config, str(tmp_path / "whole"))
  assert results["steps"] == 6 and 0.0 <= results["eval/exact_match"] <= 1.0
  assert np.isfinite(results["eval/ce"]) and np.isfinite(results["eval/mce"])
  saved = json.loads((tmp_path / "whole" / "results.json").read_text())
  assert saved["eval/exact_match"] == results["eval/exact_match"]
  lines = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text()
           .splitlines()]
  losses = [l["loss"] for l in lines if "loss" in l]
  assert losses[-1] < losses[0]  # a few steps already lower the loss
  assert all(np.isclose(l["loss"], l["loss/ce"] + config.loss.w * l["loss/mce"])
             for l in lines if "loss" in l)

  stopped = load_config("mce_lm_arith", "runlocal")
  stopped.stop_after = 3
  early = run.train_and_evaluate(stopped, str(tmp_path / "parts"))
  assert early.get("stopped_early") and early["steps"] == 3
  resumed = run.train_and_evaluate(load_config("mce_lm_arith", "runlocal"),
                                     str(tmp_path / "parts"))
  assert resumed["steps"] == 6
  want, got = saved_params(tmp_path / "whole", 6), saved_params(tmp_path / "parts", 6)
  assert want.keys() == got.keys()
  for key in want:  # the same steps on the same batches, in the same process
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7, err_msg=key)
  # A run that changes the loss (CE instead of CE + MCE) is refused on that workdir.
  from mssl import workdir as workdir_lib
  with pytest.raises(workdir_lib.WorkdirError, match="loss.w"):
    run.train_and_evaluate(load_config("mce_lm_arith", "ce,runlocal"),
                             str(tmp_path / "parts"))
