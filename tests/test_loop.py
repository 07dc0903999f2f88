"""The shared loop with a fake job (a two-parameter "model", no network, no input
pipeline): what it saves, what it refuses, and how it stops.

The fake step adds the batch mean to the parameters; ``blow_up_at`` makes the state
non-finite after that step while its loss stays finite (as batch statistics do before the
loss follows), ``nan_loss_at`` makes the loss NaN.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from mssl import checkpoint as ckpt_lib
from mssl import loop, sharding, workdir as workdir_lib

from helpers import ROOT, load_config


class FakeWriter:
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def fake_config(**overrides):
  config = load_config("quickstart")
  config.update(dict(log_every=1, eval_every=100, checkpoint_every=1, keep_checkpoints=10,
                     stop_after=-1))
  config.update(overrides)
  return config


def fake_job(total_steps, blow_up_at=None, nan_loss_at=None):
  def train_step(state, batch):
    step = state["step"] + 1
    params = {"w": state["params"]["w"] + jnp.mean(batch["x"])}
    if blow_up_at is not None:
      params = {"w": jnp.where(step >= blow_up_at, jnp.inf, params["w"])}
    loss = jnp.float32(1.0) / step
    if nan_loss_at is not None:
      loss = jnp.where(step >= nan_loss_at, jnp.nan, loss)
    return dict(state, step=step, params=params), {"loss": loss}

  def make_data(position):
    return tf.data.Dataset.range(position, 10_000).map(
        lambda i: {"x": tf.fill([8, 2], tf.cast(i, tf.float32))})

  mesh = sharding.make_mesh()
  state = sharding.replicate(mesh, {"step": jnp.zeros((), jnp.int32),
                                    "params": {"w": jnp.zeros((2,), jnp.float32)}})
  job = loop.Job(objective="fake", state=state,
                 train_step=loop.jit_train_step(train_step, mesh), make_data=make_data,
                 evaluate=lambda s: {}, total_steps=total_steps, run_info={})
  return job, mesh


def run(workdir, total_steps=4, config=None, **job_kwargs):
  job, mesh = fake_job(total_steps, **job_kwargs)
  return loop.run(config or fake_config(), str(workdir), job, mesh, FakeWriter())


def steps_on_disk(workdir):
  return ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()


def test_fake_job_trains_saves_and_resumes(tmp_path):
  outcome = run(tmp_path, total_steps=3)
  assert outcome.finished and int(outcome.state["step"]) == 3
  # params after step s: sum over batches 0..s-1 of the batch value (= its position)
  np.testing.assert_allclose(np.asarray(outcome.state["params"]["w"]), [3.0, 3.0])
  outcome = run(tmp_path, total_steps=5)  # resumes at position 3
  np.testing.assert_allclose(np.asarray(outcome.state["params"]["w"]), [10.0, 10.0])
  assert steps_on_disk(tmp_path) == [1, 2, 3, 4, 5]


def test_prefetch_reads_ahead_by_its_depth_and_keeps_the_order():
  mesh = sharding.make_mesh()
  pulled = []

  def host_batches():
    for i in range(5):
      pulled.append(i)
      yield {"x": np.full((8, 2), i, np.float32)}

  batches = loop.prefetch_to_device(host_batches(), mesh, size=3)
  first = next(batches)
  assert pulled == [0, 1, 2]  # two more already placed while step 0 would run
  assert isinstance(first["x"], jax.Array) and float(first["x"][0, 0]) == 0.0
  rest = [float(b["x"][0, 0]) for b in batches]
  assert rest == [1.0, 2.0, 3.0, 4.0] and pulled == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("depth", [1, 3])
def test_saved_input_position_counts_consumed_batches_whatever_the_prefetch(tmp_path,
                                                                            depth):
  """With batches read ahead, the position saved with a checkpoint is still the number of
  batches the steps used: stopping after 2 steps and resuming gives the straight run."""
  config = fake_config(stop_after=2)
  config.data.prefetch = depth
  outcome = run(tmp_path, total_steps=5, config=config)
  assert int(outcome.state["step"]) == 2 and not outcome.finished
  _, _, meta = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints")).restore_latest(
      ckpt_lib.abstract_like(outcome.state))
  assert meta["data_position"] == 2
  config.stop_after = -1
  outcome = run(tmp_path, total_steps=5, config=config)
  np.testing.assert_allclose(np.asarray(outcome.state["params"]["w"]), [10.0, 10.0])


def test_state_that_goes_non_finite_before_its_loss_is_never_saved(tmp_path):
  with pytest.raises(loop.NonFiniteLossError) as info:
    run(tmp_path, total_steps=6, blow_up_at=3)
  message = str(info.value)
  assert "non-finite values in the train state" in message and "after step 3" in message
  assert "the last good checkpoint (step 2) is intact" in message
  assert steps_on_disk(tmp_path) == [1, 2]
  # The last good checkpoint resumes: the same run without the fault trains to the end.
  outcome = run(tmp_path, total_steps=6)
  assert outcome.finished
  np.testing.assert_allclose(np.asarray(outcome.state["params"]["w"]), [15.0, 15.0])


def test_nan_loss_names_the_newest_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteLossError, match=r"non-finite loss at step 4 \(objective "
                     r"'fake'\): loss=nan\. Training stopped; the last good checkpoint "
                     r"\(step 3\) is intact"):
    run(tmp_path, total_steps=6, nan_loss_at=4)
  assert steps_on_disk(tmp_path) == [1, 2, 3]


def test_changed_config_on_a_workdir_is_refused_and_moves_nothing(tmp_path):
  run(tmp_path, total_steps=2)
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  config = fake_config()
  config.model.width = 16
  config.objective = "spectral_contrastive"
  with pytest.raises(workdir_lib.WorkdirError) as info:
    run(tmp_path, total_steps=4, config=config)
  message = str(info.value)
  assert "model.width: saved 8, now 16" in message
  assert "objective: saved 'matrix_ssl', now 'spectral_contrastive'" in message
  assert "no checkpoint was moved" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert not (tmp_path / "checkpoints_unreadable").exists()
  # Fields that do not change what is trained may change on resume.
  assert run(tmp_path, total_steps=3, config=fake_config(log_every=5)).finished


def test_config_differences_compare_groups_and_ignore_fields_added_since():
  saved = json.loads(fake_config().to_json_best_effort())
  saved["model"].pop("patch_size")       # a field the code has added since the save
  saved["predictor"] = None               # saved without a predictor
  differences = workdir_lib.config_differences(saved, fake_config())
  assert differences and all(d.startswith("predictor.") for d in differences)
  assert "predictor.hidden: saved '(absent)', now [128]" in differences


def test_checkpoint_of_another_structure_is_an_error_not_a_fallback(tmp_path):
  directory = str(tmp_path / "checkpoints")
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(1, {"w": jnp.ones((4, 3))}, {"data_position": 1})
  checkpointer.close()
  checkpointer = ckpt_lib.Checkpointer(directory)
  with pytest.raises(ckpt_lib.CheckpointStructureError, match="nothing was moved"):
    checkpointer.restore_latest({"w": jax.ShapeDtypeStruct((5, 3), jnp.float32)})
  checkpointer.close()
  assert os.listdir(directory) == ["1"] and not (tmp_path / "checkpoints_unreadable").exists()


def test_fingerprint_detects_changed_bytes_and_falls_back(tmp_path, caplog):
  directory = str(tmp_path / "checkpoints")
  state = {"w": jnp.arange(20_000, dtype=jnp.float32).reshape(200, 100),
           "step": jnp.int32(7)}
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(1, state, {"data_position": 1})
  checkpointer.save(2, state, {"data_position": 2})
  checkpointer.close()
  files = [os.path.join(root, name) for root, _, names in
           os.walk(os.path.join(directory, "2", "state")) for name in names]
  largest = max(files, key=os.path.getsize)  # the array data
  size = os.path.getsize(largest)
  with open(largest, "r+b") as f:
    f.seek(size // 2)
    original = f.read(64)
    f.seek(size // 2)
    f.write(bytes((b + 1) % 256 for b in original))
  checkpointer = ckpt_lib.Checkpointer(directory)
  step, restored, _ = checkpointer.restore_latest(ckpt_lib.abstract_like(state))
  checkpointer.close()
  assert step == 1
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
  warnings = [r.getMessage() for r in caplog.records if "step 2" in r.getMessage()]
  assert len(warnings) == 1 and "could not be read" in warnings[0]
  assert os.listdir(directory) == ["1"]


def test_fingerprint_is_exact_and_sensitive():
  tree = {"a": jnp.arange(10, dtype=jnp.float32), "b": jnp.ones((3,), jnp.bfloat16),
          "k": jax.random.key_data(jax.random.key(0)), "s": jnp.int32(3)}
  value = ckpt_lib.fingerprint(tree)
  assert value == ckpt_lib.fingerprint(jax.tree_util.tree_map(np.asarray, tree))
  changed = dict(tree, a=tree["a"].at[3].set(np.nextafter(np.float32(3), np.float32(4))))
  assert ckpt_lib.fingerprint(changed) != value
  swapped = dict(tree, a=tree["a"][::-1])  # same values, other positions
  assert ckpt_lib.fingerprint(swapped) != value


def test_full_disk_ends_the_run_with_one_line_and_the_last_good_step(tmp_path,
                                                                     monkeypatch):
  original = ckpt_lib.Checkpointer.save

  def save(self, step, state, metadata):
    if step == 3:
      os.makedirs(os.path.join(self.directory, f"3{ckpt_lib.TMP_SUFFIX}-1"))
      raise OSError(28, "No space left on device")
    return original(self, step, state, metadata)
  monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save)
  with pytest.raises(loop.CheckpointWriteError) as info:
    run(tmp_path, total_steps=5)
  message = str(info.value)
  assert "\n" not in message
  assert (f"could not write the checkpoint of step 3 to {tmp_path}/checkpoints: No space "
          "left on device. Training stopped; the newest good checkpoint is step 2.") in \
      message
  assert "bytes) and run again with the same workdir to resume." in message
  assert steps_on_disk(tmp_path) == [1, 2]  # no half-written checkpoint left behind
  assert not [n for n in os.listdir(tmp_path / "checkpoints") if ckpt_lib.TMP_SUFFIX in n]


def test_leftover_temporary_directories_are_removed_on_start(tmp_path):
  run(tmp_path, total_steps=2)
  leftover = tmp_path / "checkpoints" / f"3{ckpt_lib.TMP_SUFFIX}-123"
  (leftover / "state").mkdir(parents=True)
  assert run(tmp_path, total_steps=4).finished
  assert not leftover.exists() and steps_on_disk(tmp_path) == [1, 2, 3, 4]


def test_finished_run_reports_it_without_training(tmp_path):
  run(tmp_path, total_steps=2)
  outcome = run(tmp_path, total_steps=2)
  assert outcome.already_finished and int(outcome.state["step"]) == 2


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
