"""mssl.workdir: a workdir holds one run (its config is compared on resume, its lock
stops a second process) and points XLA's compilation cache."""

import json
import os
import subprocess
import sys

import jax
import pytest

from mssl import workdir as workdir_lib

from fake_job import fake_config, run_job
from helpers import ROOT, load_config


# ------------------------------------------------------------ the saved config ---------
def test_changed_config_on_a_workdir_is_refused_and_moves_nothing(tmp_path):
  run_job(tmp_path, total_steps=2)
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  config = fake_config()
  config.model.width = 16
  config.objective = "spectral_contrastive"
  with pytest.raises(workdir_lib.WorkdirError) as info:
    run_job(tmp_path, total_steps=4, config=config)
  message = str(info.value)
  assert "model.width: saved 8, now 16" in message
  assert "objective: saved 'matrix_ssl', now 'spectral_contrastive'" in message
  assert "no checkpoint was moved" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert not (tmp_path / "checkpoints_unreadable").exists()
  # Fields that do not change what is trained may change on resume.
  assert run_job(tmp_path, total_steps=3, config=fake_config(log_every=5)).finished


def test_a_deleted_config_json_does_not_switch_the_identity_check_off(tmp_path, caplog):
  """It used to resume with any changed loss block, unchecked, and never wrote config.json
  back: the copy saved with every checkpoint stands in, and is written back."""
  run_job(tmp_path, total_steps=2)
  saved = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").unlink()
  config = fake_config()
  config.loss.lam = 0.25
  with pytest.raises(workdir_lib.WorkdirError) as info:
    run_job(tmp_path, total_steps=4, config=config)
  message = str(info.value)
  assert ("holds checkpoints of another run: the config saved with checkpoint 2 "
          "(config.json is missing) differs") in message, message
  assert "loss.lam: saved 1.0, now 0.25" in message
  assert not (tmp_path / "config.json").exists()  # nothing written for a refused run
  with caplog.at_level("WARNING"):
    assert run_job(tmp_path, total_steps=3).finished
  assert json.loads((tmp_path / "config.json").read_text()) == saved
  assert any("config.json was missing: written back from the config saved with "
             "checkpoint 2" in r.getMessage() for r in caplog.records)


def test_config_differences_compare_groups_and_ignore_fields_added_since():
  saved = json.loads(fake_config().to_json_best_effort())
  saved["model"].pop("patch_size")       # a field the code has added since the save
  saved["predictor"] = None               # saved without a predictor
  differences = workdir_lib.config_differences(saved, fake_config())
  assert differences and all(d.startswith("predictor.") for d in differences)
  assert "predictor.hidden: saved '(absent)', now [128]" in differences


@pytest.mark.parametrize("now,differs", [("schedule", False), ("fixed", True)])
def test_a_field_added_since_the_save_is_compared_with_its_implicit_value(now, differs):
  """A run saved before ``optimizer.predictor_lr`` existed trained with the schedule; a
  resume that fixes the predictor's rate is another run (its optimiser has another
  group), one that keeps the schedule is the same."""
  saved = json.loads(fake_config().to_json_best_effort())
  saved["optimizer"].pop("predictor_lr", None)
  config = fake_config()
  config.optimizer.predictor_lr = now
  differences = workdir_lib.config_differences(saved, config)
  assert differences == (["optimizer.predictor_lr: saved 'schedule', now 'fixed'"]
                         if differs else [])


# ------------------------------------------------------------ the workdir lock ---------
LOCK_CHILD = """
import sys
from mssl import workdir
try:
  with workdir.WorkdirLock(sys.argv[1]):
    print("acquired")
except workdir.WorkdirError as error:
  print(error)
  sys.exit(3)
"""


def test_second_run_on_a_workdir_is_stopped_naming_the_first(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  with workdir_lib.WorkdirLock(str(tmp_path)):
    child = subprocess.run([sys.executable, "-c", LOCK_CHILD, str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 3
    assert f"is in use by process {os.getpid()}" in child.stdout
    assert "delete" in child.stdout and "run.lock" in child.stdout
  assert not (tmp_path / "run.lock").exists()  # released
  child = subprocess.run([sys.executable, "-c", LOCK_CHILD, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
  assert child.returncode == 0 and "acquired" in child.stdout


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  import socket
  (tmp_path / "run.lock").write_text(json.dumps(
      {"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
  with workdir_lib.WorkdirLock(str(tmp_path)):
    owner = json.loads((tmp_path / "run.lock").read_text())
    assert owner["pid"] == os.getpid()
  assert any("stale lock" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ the compilation cache ----
def test_compilation_cache_directory_follows_the_config(tmp_path):
  """An explicit config.compilation_cache_dir wins, "" turns the cache off, None keeps
  JAX's own setting (the test session's, from JAX_COMPILATION_CACHE_DIR) when there is
  one."""
  own = os.environ["JAX_COMPILATION_CACHE_DIR"]
  config = fake_config()
  config.compilation_cache_dir = str(tmp_path / "mine")
  assert workdir_lib.enable_compilation_cache(config, str(tmp_path)) == str(tmp_path / "mine")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
  config.compilation_cache_dir = ""
  assert workdir_lib.enable_compilation_cache(config, str(tmp_path)) is None
  assert not jax.config.jax_compilation_cache_dir
  config.compilation_cache_dir = None
  assert workdir_lib.enable_compilation_cache(config, str(tmp_path)) == own
  assert jax.config.jax_compilation_cache_dir == own


@pytest.mark.parametrize("name,text,what", [
    ("config.json", '{"objective": "matrix_ssl", "mo', "is not valid JSON (Unterminated"),
    ("run.json", "", "is empty"),
    ("results.json", "[1, 2]", "holds a JSON list, not an object"),
])
def test_a_workdir_file_that_is_not_a_json_object_is_named_with_its_fix(tmp_path, name,
                                                                        text, what):
  path = tmp_path / name
  assert workdir_lib.read_json(str(path)) is None  # absent
  path.write_text(text)
  with pytest.raises(workdir_lib.WorkdirError) as info:
    workdir_lib.read_json(str(path))
  message = str(info.value)
  assert message.startswith(f"{path} {what}"), message
  fix = {"config.json": "start a new workdir", "run.json": "start a new workdir",
         "results.json": "--config.eval.reevaluate=True"}[name]
  assert fix in message, message
  path.write_text('{"a": 1}')
  assert workdir_lib.read_json(str(path)) == {"a": 1}


def test_resuming_on_a_corrupt_config_json_is_one_error_not_a_traceback(tmp_path):
  (tmp_path / "config.json").write_text('{"objective": ')
  with pytest.raises(workdir_lib.WorkdirError, match=r"config.json is not valid JSON"):
    workdir_lib.check_same_run(str(tmp_path), load_config("quickstart"),
                               has_checkpoints=True)


def test_a_lock_naming_no_owner_is_taken_over_once_it_is_not_being_written(tmp_path,
                                                                           caplog):
  """An empty run.lock (a kill between its creation and its one write) used to lock the
  workdir for good ("in use by process ?")."""
  lock = tmp_path / workdir_lib.LOCK_FILE
  lock.write_text("")
  with pytest.raises(workdir_lib.WorkdirError, match=r"in use by process \?"):
    workdir_lib.WorkdirLock(str(tmp_path)).acquire()  # young: perhaps being written
  old = lock.stat().st_mtime - 2 * workdir_lib.UNREADABLE_LOCK_GRACE_S
  os.utime(lock, (old, old))
  with caplog.at_level("WARNING"), workdir_lib.WorkdirLock(str(tmp_path)):
    assert json.loads(lock.read_text())["pid"] == os.getpid()
  assert any("names no owner" in r.getMessage() for r in caplog.records)
  assert not lock.exists()


def test_a_resume_may_change_length_and_cadence_naming_each_change(tmp_path, caplog):
  """The resume policy: total_steps and the logging / evaluation / checkpoint cadence may
  change (named in one line, recorded in run.json, config.json updated); the seed and
  the optimiser may not (they used to change silently)."""
  run_job(tmp_path, total_steps=4, config=fake_config(total_steps=4))
  with caplog.at_level("WARNING"):
    outcome = run_job(tmp_path, total_steps=6, config=fake_config(total_steps=6, log_every=2))
  assert int(outcome.state.step) == 6
  (line,) = [r.getMessage() for r in caplog.records if "changed fields" in r.getMessage()]
  assert line.startswith("resuming from step 4 with changed fields (allowed on resume): ")
  assert "log_every: saved 1, now 2" in line and "total_steps: saved 4, now 6" in line
  info = json.loads((tmp_path / "run.json").read_text())
  assert info["total_steps"] == 6
  assert info["resumes"] == [{"step": 4, "changes": ["log_every: saved 1, now 2",
                                                     "total_steps: saved 4, now 6"]}]
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 6
  for field, value in (("seed", 7), ("optimizer.base_lr", 0.125)):  # quickstart: 0, 0.5
    config = fake_config(total_steps=8, log_every=2)
    group, _, name = field.rpartition(".")
    (config[group] if group else config)[name] = value
    with pytest.raises(workdir_lib.WorkdirError, match=rf"- {field}: saved .*, now {value}"):
      run_job(tmp_path, total_steps=8, config=config)


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"),
                                   OSError(30, "Read-only file system")])
def test_a_read_only_workdir_is_one_message(tmp_path, monkeypatch, error):
  """It used to end in 5 tracebacks (PermissionError on run.lock). (As root, chmod does
  not stop a write, so the filesystem's refusal is simulated.)"""
  real_open = os.open

  def refusing_open(path, *args, **kwargs):
    if str(path).endswith(workdir_lib.LOCK_FILE):
      raise error
    return real_open(path, *args, **kwargs)
  monkeypatch.setattr(os, "open", refusing_open)
  with pytest.raises(workdir_lib.WorkdirError) as info:
    workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  message = str(info.value)
  assert message.startswith(f"the workdir {tmp_path} is not writable ({error.strerror}): "
                            "a run writes its lock"), message
  assert "\n" not in message


def test_a_workdir_file_where_the_folder_should_be_is_one_message(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(workdir_lib.WorkdirError, match="is not writable"):
    workdir_lib.WorkdirLock(str(tmp_path / "file" / "w")).acquire()


def test_a_corrupt_workdir_file_is_reported_before_anything_is_built(tmp_path, tfds_dir,
                                                                     monkeypatch):
  """A corrupt config.json or run.json used to be a raw JSONDecodeError after 7-25 s."""
  from mssl import run
  from helpers import small
  class Trainer:  # what would build the model and data
    @staticmethod
    def train_and_evaluate(config, workdir):
      raise AssertionError("the trainer ran: the workdir files were not read first")
  real_import = run.importlib.import_module
  monkeypatch.setattr(run.importlib, "import_module", lambda name: Trainer if
                      name.startswith("mssl.trainers") else real_import(name))
  config = small(load_config("quickstart"), tfds_dir)
  for name in ("config.json", "run.json"):
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / name).write_text('{"objective": ')
    with pytest.raises(workdir_lib.WorkdirError, match=f"{name} is not valid JSON"):
      run.train_and_evaluate(config, str(workdir))
    assert not (workdir / workdir_lib.LOCK_FILE).exists()
