"""The training loop every trainer shares: resume, step, check, log, evaluate, save.

A trainer (:mod:`mssl.trainers`: pretraining of every family, supervised fine-tuning,
the language model) builds a :class:`Job`: the
initial state, a jitted ``train_step(state, batch) -> (state, metrics)``, a dataset factory
that starts at any input position, and an evaluator; :func:`run` does the rest:

* resumes from the workdir's newest readable checkpoint (state, input position, RNG), so
  N uninterrupted steps and k + (N - k) resumed steps give the same parameters;
* writes ``config.json`` / ``run.json`` and a parameter overview on a fresh start;
* checks the loss one step late (the device is never stalled for it) and stops at the
  first non-finite value, naming the step and the objective's components; before every
  save the whole state (parameters, batch statistics, optimiser state) is reduced to one
  "all finite" flag, so a state that went bad before its loss did is never saved;
* places the next batches on the devices while the current step runs
  (:func:`prefetch_to_device`, ``config.data.prefetch`` deep, default 2);
* logs (TensorBoard + JSON lines, process 0 only), evaluates every ``eval_every`` steps
  and at the end, saves every ``checkpoint_every`` steps, at the end, on a preemption
  notice and at ``stop_after`` -- only verified-finite states are saved, so the last
  checkpoint is always good;
* refuses a workdir whose checkpoints belong to another config (:mod:`mssl.workdir`), and
  turns a failed checkpoint write (a full disk) into one :class:`CheckpointWriteError`
  naming the workdir and the newest good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mssl import checkpoint as ckpt_lib
from mssl import sharding
from mssl import workdir as workdir_lib
from mssl.steps import state as state_lib
from mssl.steps.state import TrainState



# The checkpoint metadata's copy of the run's config (a dict, as in config.json).
CONFIG_KEY = "config"


class NonFiniteLossError(FloatingPointError):
  """The objective (or the train state) became NaN or infinite; the message names the
  step, the objective's components and the newest good checkpoint."""


class Interrupted(RuntimeError):
  """SIGTERM or SIGINT stopped the run at a step boundary, after saving that step."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


class StopSignals:
  """``with StopSignals() as signals:`` notes SIGTERM (a scheduler's preemption notice:
  Slurm, Kubernetes, Docker) and SIGINT (Ctrl-C) in a one-process run instead of dying at
  once, so the loop saves at the next step boundary and stops (``signals.received``). A
  second Ctrl-C stops at once. Several processes stop together through Orbax's preemption
  sync instead (a signal to one process must not make it leave the others), so there, and
  outside the main thread, nothing is installed."""

  SIGNALS = ("SIGTERM", "SIGINT")

  def __init__(self):
    self.received = None  # the signal's number, once one arrived
    self._previous = {}

  def _note(self, signum, frame):
    import signal
    if self.received == signum == signal.SIGINT:  # Ctrl-C twice: stop now
      raise KeyboardInterrupt
    self.received = signum
    logging.warning("%s received: saving at the end of this step, then stopping",
                    signal.Signals(signum).name)

  def __enter__(self):
    import signal
    import threading
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      for name in self.SIGNALS:
        number = getattr(signal, name)
        self._previous[number] = signal.signal(number, self._note)
    return self

  def __exit__(self, *exc):
    import signal
    for number, handler in self._previous.items():
      signal.signal(number, handler)
    self._previous.clear()
    return False


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (e.g. a full disk); the message names the workdir
  and the newest good checkpoint."""


@dataclasses.dataclass
class Job:
  """What :func:`run` needs from a trainer."""
  objective: str                               # named in error messages
  state: TrainState                            # replicated initial state
  train_step: Callable[[TrainState, Any], tuple]  # jitted, donates the state
  make_data: Callable[[int], Any]              # input position -> tf.data.Dataset
  evaluate: Callable[[TrainState], dict]       # state -> eval metrics
  total_steps: int
  run_info: dict                               # written to run.json on a fresh start


@dataclasses.dataclass
class Outcome:
  state: TrainState
  eval_metrics: dict
  train_seconds: float
  finished: bool                               # False: stopped early, resume later
  already_finished: bool = False               # resumed at (or past) the last step


def all_finite(tree) -> jax.Array:
  """1.0 when every floating-point value in ``tree`` is finite, else 0.0 (one reduction
  per array, on device)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)).astype(jnp.float32) if leaves else jnp.float32(1)


def prefetch_to_device(batches, mesh, size: int = 2):
  """Global sharded batches from host ``batches``, ``size`` of them placed ahead: the
  copy of the next batch to the devices overlaps the running step (placement is
  asynchronous), so the loop never waits for a transfer it could have overlapped.
  ``size=1`` places each batch just before its step (no overlap)."""
  import collections
  queue = collections.deque()
  for host_batch in batches:
    queue.append(sharding.global_batch(mesh, host_batch))
    if len(queue) >= max(1, size):
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def jit_train_step(train_step, mesh):
  """``train_step(state, batch)`` jitted for the loop: :func:`mssl.sharding.jit_train_step`
  (state replicated and donated, batch sharded along ``data``). The state's finiteness is
  checked where it matters, before each save (:func:`all_finite`), not every step: on an
  H100 a per-step reduction over the M-MAE state cost 2 ms of a 63 ms step."""
  return sharding.jit_train_step(train_step, mesh)


_all_finite = jax.jit(all_finite)


def _stopped(step: int, last_checkpoint, advice: str) -> str:
  """What a non-finite loss (or state) at ``step`` leaves behind. The loss of step k is
  computed from the parameters saved at step k - 1: a checkpoint made one step before is
  finite, but holds the parameters the fault came from, and a resume (same data order,
  same augmentation, same optimiser) repeats it."""
  if last_checkpoint == step - 1:
    where = (f"the newest checkpoint (step {last_checkpoint}) is intact and finite, but "
             "this step started from its parameters")
  elif last_checkpoint is None:
    where = "no checkpoint was saved before it"
  else:  # the step after it had a finite loss
    where = f"the last good checkpoint (step {last_checkpoint}) is intact"
  return f"{where}.{advice}"


def divergence_advice(config) -> str:
  """The fix for a run that diverged, in the message that stops it."""
  optimizer = config.get("optimizer") or {}
  if "base_lr" not in optimizer:
    return ""
  return (" A resume repeats the same steps: if the run diverged (a learning rate too "
          "high for this model and batch), it diverges again; start a new workdir with a "
          f"smaller config.optimizer.base_lr (now {optimizer['base_lr']:g}) or a longer "
          "warm-up (config.optimizer.warmup_epochs, now "
          f"{optimizer.get('warmup_epochs', 0.0):g}).")


def check_finite(step: int, metrics: dict, objective: str, last_checkpoint,
                 advice: str = "") -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if "loss" in bad or any(k.startswith("loss/") for k in bad):
    parts = ", ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items())
                      if k == "loss" or k.startswith("loss/"))
    raise NonFiniteLossError(
        f"non-finite loss at step {step} (objective {objective!r}): {parts}. Training "
        f"stopped; {_stopped(step, last_checkpoint, advice)}")


def check_state_finite(step: int, state, metrics: dict, objective: str,
                       last_checkpoint, advice: str = "") -> None:
  """Before a save: the whole state (one reduction per array, on device) must be finite."""
  if not float(_all_finite(state)):
    raise NonFiniteLossError(
        f"non-finite values in the train state (parameters, batch statistics or optimiser "
        f"state) after step {step} (objective {objective!r}; its loss was still "
        f"{metrics.get('loss', float('nan')):.6g}). Training stopped; "
        f"{_stopped(step, last_checkpoint, advice)}")


def _disk_usage(path: str) -> int:
  total = 0
  for root, _, files in os.walk(path):
    for name in files:
      try:
        total += os.path.getsize(os.path.join(root, name))
      except OSError:
        pass
  return total


def checkpoint_write_error(error: BaseException, checkpointer,
                           step: int) -> CheckpointWriteError:
  """One readable :class:`CheckpointWriteError` for a failed save of ``step`` (whose
  partial files are removed): the reason, the space a checkpoint takes, the newest good
  checkpoint on disk."""
  reason, cause = None, error
  while cause is not None and reason is None:
    if "No space left on device" in str(cause) or getattr(cause, "errno", None) == 28:
      reason = "No space left on device"
    cause = cause.__cause__ or cause.__context__
  if reason is None:
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
  try:  # let saves still in flight finish (or fail) before removing partial files
    checkpointer.wait()
  except Exception:  # the same failure, already reported above
    pass
  checkpointer.remove_partial()
  good = checkpointer.newest_on_disk()
  size = ""
  if good is not None:
    size = (" (a checkpoint of this run takes about "
            f"{_disk_usage(os.path.join(checkpointer.directory, str(good))):,} bytes)")
  newest = (f"the newest good checkpoint is step {good}" if good is not None
            else "no checkpoint of this run was saved yet")
  return CheckpointWriteError(
      f"could not write the checkpoint of step {step} to {checkpointer.directory}: "
      f"{reason}. Training stopped; {newest}. Free space{size} and run again with the "
      "same workdir to resume.")


def save_config(config, workdir: str, run_info: dict) -> None:
  """``config.json`` (the config as run) and ``run.json`` (what was derived from data)."""
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  save_run_info(workdir, run_info)


def save_run_info(workdir: str, run_info: dict) -> None:
  """``run.json``, written whole to a temporary file, then renamed over the old one: a
  kill never leaves it half written."""
  workdir_lib.write_json(os.path.join(workdir, "run.json"), run_info)


def read_run_info(workdir: str, default: dict) -> dict:
  """The workdir's ``run.json`` (a copy of ``default`` when there is none yet), to update
  and write back with :func:`save_run_info`."""
  return workdir_lib.read_json(os.path.join(workdir, "run.json")) or dict(default)


def record_resume_changes(config, workdir: str, job: Job, step: int,
                          changes: list[str]) -> None:
  """A resume that changes fields the policy allows (``workdir.IDENTITY_FIELDS``: not
  the model, objective, data, batch, seed or optimiser): names them in one line, saves
  the config as it now runs, and records the change and the new length in run.json."""
  logging.warning("resuming from step %d with changed fields (allowed on resume): %s",
                  step, "; ".join(changes))
  if jax.process_index() != 0:
    return
  info = read_run_info(workdir, job.run_info)
  info["total_steps"] = job.total_steps
  info.setdefault("resumes", []).append({"step": step, "changes": changes})
  save_config(config, workdir, info)


def write_results(workdir: str, results: dict) -> None:
  """``results.json`` of every trainer, by process 0, written whole (a kill never leaves
  it half written): numbers as JSON numbers (device and numpy scalars as floats)."""
  if jax.process_index() == 0:
    workdir_lib.write_json(os.path.join(workdir, "results.json"), {
        k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
        for k, v in results.items()})


def read_results(workdir: str):
  """The workdir's ``results.json`` as a dict, or None."""
  return workdir_lib.read_json(os.path.join(workdir, "results.json"))


def to_floats(metrics) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def flatten(config, prefix="") -> dict:
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def run(config, workdir: str, job: Job, mesh, writer) -> Outcome:
  """Trains ``job`` to ``job.total_steps`` (or until stopped); see the module docstring."""
  from clu import parameter_overview, periodic_actions  # the loop's services only
  from mssl import data as data_lib  # TensorFlow
  state = job.state
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       max_to_keep=config.keep_checkpoints)
  def config_in_checkpoint():
    found = checkpointer.read_metadata_latest()
    return (found[0], found[1][CONFIG_KEY]) if found and CONFIG_KEY in found[1] else None
  changes = workdir_lib.check_same_run(workdir, config,
                                       has_checkpoints=bool(checkpointer.all_steps()),
                                       saved_in_checkpoint=config_in_checkpoint)
  # Every checkpoint carries the config it was trained with: the identity check's stand-in
  # for a lost config.json.
  config_record = json.loads(config.to_json_best_effort())
  # Checkpoints hold the state as a dict of its fields (mssl.steps.state.to_saved).
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state_lib.to_saved(state)))
  position, start_step = 0, 0
  if restored is not None:
    start_step, saved, meta = restored
    state = state_lib.from_saved(saved)
    position = int(meta["data_position"])
    logging.info("resumed from step %d (input position %d)", start_step, position)
    if changes:
      record_resume_changes(config, workdir, job, start_step, changes)
  last_checkpoint = start_step if restored is not None else None
  iterator = data_lib.InputIterator(job.make_data, position)
  # The prefetcher reads ahead of the steps; the position saved with a checkpoint is the
  # count of batches the steps consumed.
  batches = prefetch_to_device(iterator, mesh, config.data.get("prefetch", 2))

  if jax.process_index() == 0 and start_step == 0:
    save_config(config, workdir, job.run_info)
    parameter_overview.log_parameter_overview(state.params)
    writer.write_hparams({k: v for k, v in flatten(config).items()
                          if isinstance(v, (int, float, str, bool))})

  total = job.total_steps
  if start_step >= total:  # a finished run: nothing to train, nothing to save
    checkpointer.close()
    return Outcome(state, {}, 0.0, finished=True, already_finished=True)
  progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                             every_steps=config.log_every)
  eval_metrics: dict = {}
  started = time.time()
  pending = None  # (step, metrics) checked once the next step is dispatched
  advice = divergence_advice(config)
  signals = StopSignals()
  try:
    signals.__enter__()
    for step in range(start_step + 1, total + 1):
      state, metrics = job.train_step(state, next(batches))
      if pending is not None:  # the previous step's loss, without stalling the device
        check_finite(pending[0], to_floats(pending[1]), job.objective, last_checkpoint,
                     advice)
      pending = (step, metrics)
      progress(step)
      is_last = step == total
      stopping = config.stop_after > 0 and step - start_step >= config.stop_after
      save_now = (step % config.checkpoint_every == 0 or is_last or stopping
                  or signals.received is not None or checkpointer.reached_preemption(step))
      if step % config.log_every == 0 or save_now:
        host_metrics = to_floats(metrics)
        check_finite(step, host_metrics, job.objective, last_checkpoint, advice)
        pending = None
        if step % config.log_every == 0 or is_last:
          writer.write_scalars(step, host_metrics)
      if step % config.eval_every == 0 or is_last:
        eval_metrics = job.evaluate(state)
        writer.write_scalars(step, eval_metrics)
      if save_now:  # only verified-finite states are saved
        check_state_finite(step, state, host_metrics, job.objective, last_checkpoint,
                           advice)
        try:
          checkpointer.save(step, state_lib.to_saved(state),
                            {"data_position": position + (step - start_step),
                             CONFIG_KEY: config_record})
        except Exception as error:  # an async write error surfaces at the next save
          raise checkpoint_write_error(error, checkpointer, step) from None
        last_checkpoint = step
        if signals.received is not None and not is_last:
          import signal
          name = signal.Signals(signals.received).name
          raise Interrupted(f"stopped by {name} at step {step} of {total}: checkpoint "
                            f"{step} saved in {checkpointer.directory}; run again with the "
                            "same workdir to resume", signals.received)
        if checkpointer.reached_preemption(step) or stopping:
          logging.warning("stopping at step %d (%s): checkpoint saved; run again with the "
                          "same workdir to resume", step,
                          "preemption notice" if not stopping else "config.stop_after")
          break
    writer.flush()
  except BaseException:
    try:  # the original error is the one to report
      checkpointer.close()  # waits for the last save (the one an Interrupted made)
    except Exception as error:  # pragma: no cover - a second failure while stopping
      logging.warning("closing the checkpointer also failed: %s", str(error)[:200])
    raise
  finally:
    signals.__exit__()
  try:
    checkpointer.close()  # waits for the last asynchronous save
  except Exception as error:
    raise checkpoint_write_error(error, checkpointer, last_checkpoint) from None
  return Outcome(state, eval_metrics, time.time() - started,
                 finished=int(state.step) >= total)
