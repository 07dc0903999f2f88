"""The workdir a run owns: one run at a time, and only the run it was started for.

* :class:`WorkdirLock`: a lock file (``workdir/run.lock``: pid, host, start time) taken by
  process 0 for the whole run. A second run on the same workdir stops at once, naming the
  first; a lock left by a process that no longer exists (killed on this host) is stale and
  taken over with a warning.
* :func:`check_same_run`: a workdir with checkpoints belongs to the config saved in its
  ``config.json``; resuming it with a config that changes the model, heads, objective or
  data is an error listing the fields that differ (and nothing is moved).
* :func:`read_json`: the one reader of the JSON files a run writes into its workdir
  (``config.json``, ``run.json``, ``results.json``): a file that is not a JSON object is a
  :class:`WorkdirError` naming the file, what is wrong with it and the fix.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import time
from typing import Optional

LOCK_FILE = "run.lock"
# A lock whose owner cannot be read is being written for at most a moment (it is created,
# then its one line written); older than this, it is left over and taken over.
UNREADABLE_LOCK_GRACE_S = 10.0

# The resume policy. Config fields that define what a checkpoint holds, what the run
# optimises and its random streams: a resume that changes one is refused. Fields outside
# these (length, logging, evaluation, checkpoint cadence, paths) may change on resume;
# each change is named in one line and recorded in run.json.
IDENTITY_FIELDS = ("mode", "init_from", "objective", "loss", "model", "projector",
                   "predictor", "mae",
                   "teacher", "batch_size", "seed", "optimizer", "data.dataset",
                   "data.image_size", "data.num_views", "data.problem_seed",
                   "data.train_problems", "finetune")
# Identity fields added to the configs after runs were saved without them, with the value
# such a run had implicitly: a resume compares against it, so a run that now sets another
# value is told so (instead of failing on the checkpoint's optimiser tree).
ADDED_FIELDS = {"optimizer.predictor_lr": "schedule"}


class WorkdirError(RuntimeError):
  """The workdir cannot be used by this run (in use, or holding another run)."""


# What to do about a workdir file that cannot be read, by file name.
_FIXES = {
    "config.json": "it is the config the checkpoints were trained with: restore it from "
                   "a copy, or start a new workdir",
    "run.json": "it records what the run derived from its data (class count, step "
                "count): restore it from a copy, or start a new workdir",
    "results.json": "delete it, or rerun with --config.eval.reevaluate=True: the last "
                    "checkpoint is evaluated again and the file written anew",
}


def read_json(path: str):
  """The JSON object in ``path`` as a dict, or None when there is no such file. A file
  that cannot be read, is not JSON (an interrupted write, an edit) or holds no object is
  a :class:`WorkdirError` that names it and says what to do."""
  name = os.path.basename(path)
  fix = _FIXES.get(name, "restore it from a copy, or start a new workdir")
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except FileNotFoundError:
    return None
  except OSError as error:
    raise WorkdirError(f"{path} cannot be read ({error.strerror}); {fix}.") from None
  try:
    value = json.loads(text)
  except json.JSONDecodeError as error:
    what = "is empty" if not text.strip() else (
        f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; "
        "a run killed while writing it, or an edit)")
    raise WorkdirError(f"{path} {what}; {fix}.") from None
  if not isinstance(value, dict):
    raise WorkdirError(f"{path} holds a JSON {type(value).__name__}, not an object; "
                       f"{fix}.")
  return value


def _is_local(path: str) -> bool:
  return "://" not in path


def _process_exists(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds ``workdir/run.lock`` (process 0 only; a no-op
  on remote paths such as ``gs://``, where the filesystem offers no atomic create)."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = enabled and _is_local(workdir)
    self._held = False

  def _owner(self) -> Optional[dict]:
    try:
      with open(self.path, encoding="utf-8") as f:
        owner = json.load(f)
      return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
      return None

  def _age(self) -> float:
    try:
      return time.time() - os.path.getmtime(self.path)
    except OSError:
      return 0.0

  def acquire(self) -> None:
    if not self.enabled:
      return
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
    except OSError as error:  # read-only, or a file where the folder should be
      raise self._not_writable(error) from None
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        owner, age = self._owner(), self._age()
        if owner is None and age > UNREADABLE_LOCK_GRACE_S:
          # Empty or not JSON, and not just being written: no owner can hold it.
          logging.warning("taking over the lock %s, which names no owner (empty or not "
                          "JSON, last written %.0f s ago).", self.path, age)
          os.remove(self.path)
          continue
        owner = owner or {}
        same_host = owner.get("host") == me["host"]
        if same_host and isinstance(owner.get("pid"), int) and \
            not _process_exists(owner["pid"]):
          logging.warning("taking over the stale lock %s of process %s (started %s), "
                          "which no longer runs.", self.path, owner.get("pid"),
                          owner.get("started"))
          os.remove(self.path)
          continue
        raise WorkdirError(
            f"the workdir {os.path.dirname(self.path)} is in use by process "
            f"{owner.get('pid', '?')} on {owner.get('host', '?')} (started "
            f"{owner.get('started', '?')}); two runs on one workdir would overwrite each "
            f"other's checkpoints. Wait for it to finish, or use another workdir. If that "
            f"process is gone, delete {self.path}.") from None
      except OSError as error:
        if isinstance(error, PermissionError) or error.errno == errno.EROFS:
          raise self._not_writable(error) from None
        raise
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(me, f)
      self._held = True
      return
    raise WorkdirError(f"could not take the lock {self.path}.")

  def _not_writable(self, error: OSError) -> WorkdirError:
    return WorkdirError(
        f"the workdir {os.path.dirname(self.path)} is not writable "
        f"({error.strerror or error}): a run writes its lock, checkpoints, metrics and "
        "results there. Use a writable workdir (a copy of this one resumes from its "
        "checkpoints); to evaluate or export a read-only run, point "
        "config.pretrained_workdir (configs/linear_eval.py) or mssl.export at it.")

  def release(self) -> None:
    if self._held:
      self._held = False
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def _is_identity(key: str) -> bool:
  return any(key == f or key.startswith(f + ".") for f in IDENTITY_FIELDS)


def _identity(flat: dict, identity: bool = True) -> dict:
  return {k: v for k, v in flat.items() if _is_identity(k) == identity}


def config_differences(saved: dict, config, identity: bool = True) -> list[str]:
  """``"field: saved X, now Y"`` for every identity field that differs between a saved
  ``config.json`` (as a dict) and ``config`` (``identity=False``: every other field, the
  changes a resume may make)."""
  now = _identity(_flatten(json.loads(config.to_json_best_effort())), identity)
  before = _identity(_flatten(saved), identity)
  for key, implicit in ADDED_FIELDS.items():
    if key in now and key not in before and _is_identity(key) == identity:
      before[key] = implicit

  def compared(key, other):
    # A field the other side lacks entirely is one added (or retired) since the save, at
    # the value it had implicitly; a field the other side holds as a whole group (or a
    # value where it has a group: predictor None vs a head) is a difference.
    return key in other or any(key.startswith(k + ".") or k.startswith(key + ".")
                               for k in other)
  keys = sorted({k for k in now if compared(k, before)} |
                {k for k in before if compared(k, now)})
  return [f"{k}: saved {before.get(k, '(absent)')!r}, now {now.get(k, '(absent)')!r}"
          for k in keys if before.get(k) != now.get(k)]


def check_same_run(workdir: str, config, has_checkpoints: bool,
                   saved_in_checkpoint=None) -> list[str]:
  """Raises :class:`WorkdirError` when ``workdir`` holds checkpoints of a run whose saved
  config differs from ``config`` in a field of :data:`IDENTITY_FIELDS`; else returns the
  accepted changes (the other fields that differ, ``"field: saved X, now Y"``).

  Without ``config.json`` (deleted, lost in a copy) the copy every checkpoint carries
  stands in (``saved_in_checkpoint()``: ``(step, config dict)`` or None), and once the
  check passes it is written back as ``config.json``."""
  if not has_checkpoints:
    return []
  path = os.path.join(workdir, "config.json")
  saved = read_json(path)
  source = "its config.json"
  if saved is None:
    found = saved_in_checkpoint() if saved_in_checkpoint is not None else None
    if found is None:
      logging.warning("%s is missing and the checkpoints in %s carry no copy of the config "
                      "(saved by an older mssl): the resume cannot check that this config "
                      "is the one they were trained with.", path, workdir)
      return []
    step, saved = found
    source = f"the config saved with checkpoint {step} (config.json is missing)"
  differences = config_differences(saved, config)
  if differences:
    raise WorkdirError(
        f"the workdir {workdir} holds checkpoints of another run: {source} differs "
        "from this config in fields that change the model, objective or data:\n  - "
        + "\n  - ".join(differences) + "\nResume with the saved values, or use a new "
        "workdir; no checkpoint was moved.")
  if not os.path.exists(path):
    write_json(path, saved)
    logging.warning("%s was missing: written back from %s.", path, source.split(" (")[0])
  return config_differences(saved, config, identity=False)


def write_json(path: str, payload: dict) -> None:
  """``payload`` as JSON in ``path``, written whole to a temporary file and renamed over
  the old one: a kill never leaves it half written."""
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def enable_compilation_cache(config, workdir: str) -> Optional[str]:
  """Points XLA's persistent compilation cache at ``config.compilation_cache_dir``, so
  that a restarted run (preempted, resumed) loads its compiled step instead of compiling
  it again (an R50 step takes 80-120 s to compile on an H100). Returns the directory, or
  None when off.

  ``compilation_cache_dir``: a path; "" turns the cache off; None (the default) keeps
  JAX's own setting when one is made (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update``: one cache shared by every run of a machine), else
  ``WORKDIR/compilation_cache``. Programs that compile in under a second (JAX's threshold)
  are not written. The cache is process-wide in JAX: a second run in the same process
  with another directory resets it to that one.
  """
  import jax
  from jax.experimental.compilation_cache import compilation_cache as cache
  directory = config.get("compilation_cache_dir")
  if not _JAX_OWN_CACHE:  # JAX's setting before mssl first changed it
    _JAX_OWN_CACHE.append(jax.config.jax_compilation_cache_dir)
  if directory == "":  # off, for this run
    if jax.config.jax_compilation_cache_dir:
      cache.reset_cache()
      jax.config.update("jax_compilation_cache_dir", None)
    return None
  directory = directory or _JAX_OWN_CACHE[0] or os.path.join(workdir, "compilation_cache")
  if jax.config.jax_compilation_cache_dir != directory:
    cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", directory)
  return directory


_JAX_OWN_CACHE: list = []
