"""mssl.loop: the shared loop with a fake job (tests/fake_job.py): what it saves, what it
refuses and how it stops; and real runs through it: resumed in a new process, killed
mid-run, stopped at the first non-finite loss."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mssl import checkpoint as ckpt_lib
from mssl import loop, sharding, run
from mssl.steps import state as state_lib

from fake_job import FakeWriter, fake_config, run_job, steps_on_disk
from helpers import FAST_MODEL, ROOT, load_config, params_of, run_main, small


# ------------------------------------------------------------ the fake job -------------
def test_fake_job_trains_saves_and_resumes(tmp_path):
  outcome = run_job(tmp_path, total_steps=3)
  assert outcome.finished and int(outcome.state.step) == 3
  # params after step s: sum over batches 0..s-1 of the batch value (= its position)
  np.testing.assert_allclose(np.asarray(outcome.state.params["w"]), [3.0, 3.0])
  outcome = run_job(tmp_path, total_steps=5)  # resumes at position 3
  np.testing.assert_allclose(np.asarray(outcome.state.params["w"]), [10.0, 10.0])
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
  outcome = run_job(tmp_path, total_steps=5, config=config)
  assert int(outcome.state.step) == 2 and not outcome.finished
  _, _, meta = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints")).restore_latest(
      ckpt_lib.abstract_like(state_lib.to_saved(outcome.state)))
  assert meta["data_position"] == 2
  config.stop_after = -1
  outcome = run_job(tmp_path, total_steps=5, config=config)
  np.testing.assert_allclose(np.asarray(outcome.state.params["w"]), [10.0, 10.0])


def test_state_that_goes_non_finite_before_its_loss_is_never_saved(tmp_path):
  with pytest.raises(loop.NonFiniteLossError) as info:
    run_job(tmp_path, total_steps=6, blow_up_at=3)
  message = str(info.value)
  assert "non-finite values in the train state" in message and "after step 3" in message
  assert ("the newest checkpoint (step 2) is intact and finite, but this step started "
          "from its parameters.") in message
  assert steps_on_disk(tmp_path) == [1, 2]
  # The last good checkpoint resumes: the same run without the fault trains to the end.
  outcome = run_job(tmp_path, total_steps=6)
  assert outcome.finished
  np.testing.assert_allclose(np.asarray(outcome.state.params["w"]), [15.0, 15.0])


def test_nan_loss_names_the_newest_good_checkpoint(tmp_path):
  """The loss of step 4 comes from the parameters saved at step 3: that checkpoint is
  finite but is where the fault started; with a checkpoint every 2 steps, the one of step
  2 is good (step 3's loss, computed from it, was finite)."""
  with pytest.raises(loop.NonFiniteLossError, match=r"non-finite loss at step 4 \(objective "
                     r"'fake'\): loss=nan\. Training stopped; the newest checkpoint \(step "
                     r"3\) is intact and finite, but this step started from its parameters"):
    run_job(tmp_path / "every_step", total_steps=6, nan_loss_at=4)
  assert steps_on_disk(tmp_path / "every_step") == [1, 2, 3]
  config = fake_config(checkpoint_every=2)
  with pytest.raises(loop.NonFiniteLossError, match=r"Training stopped; the last good "
                     r"checkpoint \(step 2\) is intact\."):
    run_job(tmp_path / "every_other", total_steps=6, nan_loss_at=4, config=config)


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
    run_job(tmp_path, total_steps=5)
  message = str(info.value)
  assert "\n" not in message
  assert (f"could not write the checkpoint of step 3 to {tmp_path}/checkpoints: No space "
          "left on device. Training stopped; the newest good checkpoint is step 2.") in \
      message
  assert "bytes) and run again with the same workdir to resume." in message
  assert steps_on_disk(tmp_path) == [1, 2]  # no half-written checkpoint left behind
  assert not [n for n in os.listdir(tmp_path / "checkpoints") if ckpt_lib.TMP_SUFFIX in n]


def test_finished_run_reports_it_without_training(tmp_path):
  run_job(tmp_path, total_steps=2)
  outcome = run_job(tmp_path, total_steps=2)
  assert outcome.already_finished and int(outcome.state.step) == 2


# ------------------------------------------------------------ resume -------------------
@pytest.mark.slow(seconds=55)
def test_resume_in_a_new_process_matches_straight_run(tfds_dir, tmp_path):
  """N steps straight == k steps, then a new process resuming from the workdir to N."""
  overrides = ["--config.data.data_dir=" + tfds_dir, "--config.data.image_size=16",
               "--config.batch_size=32", "--config.total_steps=4",
               "--config.checkpoint_every=2", "--config.eval_every=4",
               "--config.data.eval_split=test[:64]", "--config.data.knn_split=train[:64]",
               "--config.eval.batch_size=64", *FAST_MODEL]
  config = "--config=configs/matrix_ssl_r18_cifar.py:runlocal"
  straight = tmp_path / "straight"
  first = run_main([config, f"--workdir={straight}", *overrides])
  assert first.returncode == 0, first.stderr[-3000:]
  resumed = tmp_path / "resumed"
  part = run_main([config, f"--workdir={resumed}", *overrides, "--config.stop_after=2"])
  assert part.returncode == 0, part.stderr[-3000:]
  assert ckpt_lib.Checkpointer(str(resumed / "checkpoints")).all_steps() == [2]
  rest = run_main([config, f"--workdir={resumed}", *overrides])
  assert rest.returncode == 0, rest.stderr[-3000:]
  assert "resumed from step 2" in rest.stderr
  want, want_step = params_of(straight)
  got, got_step = params_of(resumed)
  assert want_step == got_step == 4
  # Bit for bit: on one machine (same CPU type and core count) a run repeats exactly,
  # resumed or not. Across machines it does not (docs/reproducibility.md).
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)


def _signalled_run(args, workdir, signum, after_step):
  """Starts ``mssl.main`` with ``args``, sends ``signum`` once a checkpoint after step
  ``after_step`` is on disk, and returns (the process after it ended, its stderr)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  log = open(workdir.parent / f"{workdir.name}.{signum}.stderr", "w+")
  proc = subprocess.Popen([sys.executable, "-m", "mssl.main", *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=log)
  checkpoints = workdir / "checkpoints"
  deadline = time.time() + 240
  try:
    while time.time() < deadline:
      done = [int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()] \
          if checkpoints.exists() else []
      if done and max(done) > after_step:
        break
      time.sleep(0.2)
    proc.send_signal(signum)
  finally:
    proc.wait(timeout=60)
  log.seek(0)
  return proc, log.read()


@pytest.mark.slow(seconds=75)
def test_sigterm_saves_and_resumes_then_sigkill_resumes_from_last_checkpoint(tfds_dir,
                                                                             tmp_path):
  """SIGTERM, the usual preemption notice in a one-process run (plain `python -m
  mssl.main`, single-node Slurm, Docker, Kubernetes): the step in flight is saved, the
  lock released, one line names the step, and the exit status is the signal's (128 + 15).
  The run resumes from that step; SIGKILL of the resumed run (nothing can be saved) loses
  only the steps after its last checkpoint, and the next run resumes from that one."""
  workdir = tmp_path / "run"
  args = ["--config=configs/byol_r18_cifar.py:runlocal", f"--workdir={workdir}",
          "--config.data.data_dir=" + tfds_dir, "--config.data.image_size=16",
          "--config.batch_size=32", "--config.total_steps=400", "--config.checkpoint_every=2",
          "--config.eval_every=1000", "--config.log_every=1000",
          "--config.data.eval_split=test[:64]", "--config.data.knn_split=train[:64]",
          "--config.eval.batch_size=64", *FAST_MODEL]
  checkpoints = workdir / "checkpoints"
  proc, stderr = _signalled_run(args, workdir, signal.SIGTERM, after_step=2)
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  stopped = [line for line in stderr.splitlines() if "Interrupted: stopped by SIGTERM" in line]
  assert len(stopped) == 1, stderr[-3000:]
  last = ckpt_lib.Checkpointer(str(checkpoints)).latest_step()
  assert f"at step {last} of 400: checkpoint {last} saved" in stopped[0]
  assert not (workdir / "run.lock").exists()

  # The resumed run starts from that step; it is killed once it has saved two more.
  proc, stderr = _signalled_run(args, workdir, signal.SIGKILL, after_step=last + 2)
  assert proc.returncode == -signal.SIGKILL
  assert f"resumed from step {last}" in stderr, stderr[-3000:]
  killed_at = ckpt_lib.Checkpointer(str(checkpoints)).latest_step()
  assert killed_at > last, "the resumed run wrote no checkpoint before the kill"
  resumed = run_main([a for a in args if "total_steps" not in a]
                     + [f"--config.total_steps={killed_at + 2}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from step {killed_at}" in resumed.stderr
  assert ckpt_lib.Checkpointer(str(checkpoints)).latest_step() == killed_at + 2


# ------------------------------------------------------------ NaN stop -----------------
@pytest.mark.slow(seconds=8)
def test_stops_at_first_non_finite_loss_and_keeps_last_checkpoint(tfds_dir, tmp_path):
  config = small(load_config("vicreg_r18_cifar", "runlocal"), tfds_dir, total_steps=6,
                 checkpoint_every=1, eval_every=100, log_every=100,
                 **{"model.name": "vit_micro", "model.patch_size": 4})
  config.optimizer.base_lr = 1e30  # the first update blows the weights up
  with pytest.raises(loop.NonFiniteLossError) as info:
    run.train_and_evaluate(config, str(tmp_path))
  message = str(info.value)
  assert "non-finite loss at step 2" in message and "'vicreg'" in message
  assert "loss/invariance=" in message and "step 1" in message
  # lr 1e30: the checkpoint of step 1 is finite but already blown up (issue 28): the
  # message says so, and how to restart.
  assert ("the newest checkpoint (step 1) is intact and finite, but this step started "
          "from its parameters. A resume repeats the same steps") in message, message
  assert "smaller config.optimizer.base_lr (now 1e+30)" in message
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"))
  assert checkpointer.all_steps() == [1]
  params, step = params_of(tmp_path)
  assert step == 1 and all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_at_the_next_step_and_the_next_run_resumes(tmp_path, name):
  """A preemption notice (SIGTERM) or Ctrl-C (SIGINT) in a one-process run: the step in
  flight ends, is saved, and the run stops with one error naming that step; the next run
  resumes from it and trains to the end. Nothing else is lost."""
  import signal
  from fake_job import fake_job
  job, mesh = fake_job(8)
  step_fn, calls = job.train_step, []

  def train_step(state, batch):  # the signal arrives while step 3 runs
    calls.append(1)
    if len(calls) == 3:
      os.kill(os.getpid(), getattr(signal, name))
    return step_fn(state, batch)
  job.train_step = train_step
  config = fake_config(checkpoint_every=100)  # no periodic save would keep step 3
  handlers = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT)}
  with pytest.raises(loop.Interrupted) as info:
    loop.run(config, str(tmp_path), job, mesh, FakeWriter())
  assert f"stopped by {name} at step 3 of 8: checkpoint 3 saved" in str(info.value)
  assert info.value.signum == getattr(signal, name)
  assert steps_on_disk(tmp_path) == [3]
  # The handlers are the process's own again once the loop has stopped.
  assert {n: signal.getsignal(n) for n in handlers} == handlers
  outcome = run_job(tmp_path, total_steps=8, config=config)
  assert outcome.finished and int(outcome.state.step) == 8
  assert steps_on_disk(tmp_path) == [3, 8]
