"""mssl.writers: metrics.jsonl (plain numbers, non-finite values as text, a resumed run's
repeated steps) beside clu's writers, on the main process only."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from mssl import writers


def test_jsonl_records_plain_numbers_and_non_finite_values_as_text(tmp_path):
  path = tmp_path / "new" / "metrics.jsonl"  # the folder is made
  writer = writers.JsonlWriter(str(path))
  writer.write_scalars(np.int64(3), {"loss": np.float32(0.5), "rank": jnp.asarray(2.0),
                                     "bad": float("nan"), "big": -np.inf, "name": "x"})
  writer.close()
  record = json.loads(path.read_text())
  assert record == {"step": 3, "loss": 0.5, "rank": 2.0, "bad": "nan", "big": "-inf",
                    "name": "x"}
  assert type(record["step"]) is int and type(record["loss"]) is float


def test_read_jsonl_keeps_the_last_record_of_a_step_written_again(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  assert writers.read_jsonl(path) == []  # no file yet
  first = writers.JsonlWriter(path)
  for step, scalars in ((1, {"loss": 3.0}), (2, {"loss": 2.0}), (2, {"eval/knn": 0.1})):
    first.write_scalars(step, scalars)
  first.close()
  resumed = writers.JsonlWriter(path)  # appends, from step 2 again
  resumed.write_scalars(2, {"loss": 1.5})
  resumed.write_scalars(3, {"loss": 1.0})
  resumed.close()
  assert writers.read_jsonl(path) == [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 1.5},
                                      {"step": 2, "eval/knn": 0.1},
                                      {"step": 3, "loss": 1.0}]


def test_only_the_main_process_writes_metrics_and_events(tmp_path):
  for is_main in (True, False):
    workdir = tmp_path / ("main" if is_main else "other")
    workdir.mkdir()
    writer = writers.create_writer(str(workdir), is_main=is_main)
    writer.write_scalars(1, {"loss": 0.5})
    writer.flush()
    writer.close()
    assert writers.read_jsonl(str(workdir / "metrics.jsonl")) == (
        [{"step": 1, "loss": 0.5}] if is_main else [])
    assert bool(list(workdir.glob("events.out.tfevents*"))) == is_main


def test_a_last_line_cut_short_is_dropped_and_the_next_run_appends_on_a_new_line(
    tmp_path, caplog):
  """A SIGKILL can stop a write anywhere: the cut line is dropped with a warning, and
  the resumed run's records do not glue onto it."""
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo')
  with caplog.at_level("WARNING"):
    assert writers.read_jsonl(str(path)) == [{"step": 1, "loss": 3.0},
                                             {"step": 2, "loss": 2.0}]
  assert any("dropped its last line 3" in r.getMessage() for r in caplog.records)
  resumed = writers.JsonlWriter(str(path))
  resumed.write_scalars(3, {"loss": 1.0})
  resumed.close()
  assert writers.read_jsonl(str(path))[-1] == {"step": 3, "loss": 1.0}
  assert path.read_text().splitlines()[-1] == '{"step": 3, "loss": 1.0}'


def test_a_broken_line_before_the_last_is_an_error_naming_the_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 3.0}\nnot json\n{"step": 3, "loss": 1.0}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2, is not a metrics record"):
    writers.read_jsonl(str(path))
  path.write_text('{"step": 1}\n{"loss": 2.0}\n{"step": 3}\n')  # JSON, but no step
  with pytest.raises(ValueError, match=r"line 2, is not a metrics record"):
    writers.read_jsonl(str(path))
