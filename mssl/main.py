"""Entry point: ``python -m mssl.main --config=configs/X.py[:arg] --workdir=DIR``.

Flags, optional multi-host initialisation, then :func:`mssl.train.train_and_evaluate`
(importable on its own, e.g. from a notebook). Any config field can be overridden on the
command line, e.g. ``--config.batch_size=256 --config.optimizer.base_lr=0.3``;
``--config.FIELD=None`` unsets a field (``--config.predictor=None``: no predictor).
Before anything is built, the command line is checked against the config file: a field
the config does not have is an error naming the fields it has. Switching the objective
(``--config.objective=vicreg`` on a Matrix-SSL config) replaces ``config.loss`` by the new
objective's defaults (plus any ``--config.loss.KEY`` given for it) and sets the teacher it
needs, and says so. A config file runs from any working directory.

Multi-host: ``--config.distributed.initialize=True`` (arguments from the config fields
``coordinator_address``, ``num_processes``, ``process_id``, or from the environment as
``jax.distributed.initialize`` finds it on TPU VMs and Slurm).

A run that cannot go on (an invalid config, a non-finite loss, a workdir in use or
holding another run, a checkpoint that cannot be written) ends with one message and
exit status 1, not a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
flags.mark_flags_as_required(["config", "workdir"])

_PREFIX = "--config."


class CommandLineError(ValueError):
  """A ``--config...`` argument that does not fit the config file."""


# ------------------------------------------------------------------ the command line --
def config_file_argument(argv) -> str | None:
  """``FILE[:ARG]`` of ``--config=FILE[:ARG]`` (or ``--config FILE[:ARG]``) in ``argv``."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def make_importable(config_file: str) -> None:
  """Lets a config file import its siblings (``from configs import common``) from any
  working directory: the folder holding its package goes on ``sys.path``."""
  folder = os.path.dirname(os.path.abspath(config_file))
  root = os.path.dirname(folder) if os.path.exists(
      os.path.join(folder, "__init__.py")) else folder
  if root not in sys.path:
    sys.path.insert(0, root)


def load_config_file(spec: str):
  """The config ``FILE[:ARG]`` defines (as ``config_flags`` will load it)."""
  path, _, arg = spec.partition(":")
  make_importable(path)
  module_spec = importlib.util.spec_from_file_location("mssl_config_file", path)
  if module_spec is None:
    raise CommandLineError(f"--config={spec}: {path!r} is not a Python file.")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _overrides(argv) -> list[tuple[int, str, str]]:
  """``(index, dotted field, value)`` of every ``--config.FIELD=VALUE`` in ``argv``."""
  out = []
  for i, arg in enumerate(argv):
    if arg.startswith(_PREFIX):
      field, _, value = arg[len(_PREFIX):].partition("=")
      out.append((i, field, value))
  return out


def _lookup(config, field: str):
  """The value at dotted ``field``; raises KeyError naming the first missing part."""
  import ml_collections
  node, walked = config, "config"
  for part in field.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      what = (f"its fields: {', '.join(fields)}" if fields
              else f"{walked} is {node!r}, not a group of fields")
      raise KeyError(f"{walked} has no field {part!r}; {what}.")
    node, walked = node[part], f"{walked}.{part}"
  return node


def prepare_command_line(argv, base) -> tuple[list, dict, dict]:
  """Checks the ``--config.*`` arguments against ``base`` (the file's config) and takes
  out those flags cannot apply to a locked config: ``=None`` values, and loss keys of an
  objective chosen on the same command line. Returns ``(argv for absl, {field: None},
  {loss key: text value})``."""
  objective = next((v for _, f, v in _overrides(argv) if f == "objective"),
                   base.get("objective"))
  switched = objective != base.get("objective")
  keep, nones, new_loss = list(argv), {}, {}
  drop = set()
  for index, field, value in _overrides(argv):
    if value == "None":
      try:
        _lookup(base, field)
      except KeyError as error:
        raise CommandLineError(f"--config.{field}=None: {error.args[0]}") from None
      nones[field] = None
      drop.add(index)
      continue
    if switched and field.startswith("loss."):
      new_loss[field[len("loss."):]] = value
      drop.add(index)
      continue
    try:
      _lookup(base, field)
    except KeyError as error:
      raise CommandLineError(f"--config.{field}: {error.args[0]}") from None
  keep = [a for i, a in enumerate(argv) if i not in drop]
  return keep, nones, new_loss


def _parse_value(text: str):
  import ast
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a string such as exact / gaussian


def switch_objective(config, base, explicit_loss: dict, explicit_fields) -> None:
  """After ``--config.objective=NEW`` on a config written for another objective:
  ``config.loss`` becomes NEW's defaults updated with ``explicit_loss`` (its teacher and
  schedules come with it: they are the registry entry's). Logs what changed."""
  import ml_collections
  from mssl import losses
  objective = config.get("objective")
  if objective == base.get("objective") or objective not in losses.names():
    return  # unchanged, or unknown (validation names the registered ones)
  allowed = losses.loss_keywords(objective)
  unknown = sorted(set(explicit_loss) - set(allowed))
  if unknown:
    raise CommandLineError(
        f"--config.loss.{unknown[0]}: objective {objective!r} does not take "
        f"{', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")
  loss = {k: v for k, v in losses.loss_defaults(objective).items() if v is not None}
  loss.update({k: _parse_value(v) for k, v in explicit_loss.items()})
  dropped = sorted(set(base.loss.keys()) - set(allowed))
  with config.unlocked():
    config.loss = ml_collections.ConfigDict(loss)
  logging.warning("config.objective=%r replaces the config file's %r: config.loss is now "
                  "%r (its defaults%s)%s; its teacher: %s.", objective, base.objective,
                  dict(config.loss), " with your --config.loss values" if explicit_loss
                  else "", f", dropped {', '.join(dropped)}" if dropped else "",
                  losses.spec(objective).teacher)


def _set_none(config, fields: dict) -> None:
  for field in fields:
    *path, last = field.split(".")
    node = config
    for part in path:
      node = node[part]
    with config.unlocked():
      node[last] = None


_STATE: dict = {}


def _where(error: BaseException, spec) -> str:
  """`` (FILE, line N: CODE)`` of the innermost frame of the config file (or a config
  beside it) where ``error`` arose; "" for the deliberate errors of config arguments and
  when no such frame exists (a SyntaxError names its line itself)."""
  import traceback
  if spec is None or isinstance(error, SyntaxError) or \
      type(error).__name__ == "ConfigArgError":
    return ""
  folder = os.path.dirname(os.path.abspath(spec.split(":", 1)[0]))
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if os.path.dirname(os.path.abspath(f.filename)) == folder]
  if not frames:
    return ""
  frame = frames[-1]
  name = os.path.relpath(frame.filename)
  name = frame.filename if name.startswith("..") else name
  return f" ({name}, line {frame.lineno}: {frame.line})"


def parse_flags(argv):
  """absl's flag parsing, after :func:`prepare_command_line`; errors are one line."""
  spec = None
  try:
    spec = config_file_argument(argv)
    if spec is not None:
      base = load_config_file(spec)
      argv, _STATE["nones"], _STATE["loss"] = prepare_command_line(argv, base)
      _STATE["base"] = base
      sys.argv[:] = argv  # config_flags reads the overrides from sys.argv
  except Exception as error:  # the config file's own errors (ConfigArgError, ...)
    sys.stderr.write(f"FATAL: {type(error).__name__}: {error}{_where(error, spec)}\n")
    sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    sys.stderr.write(f"FATAL Flags parsing error: {error}\n")
    sys.exit(2)


# ------------------------------------------------------------------ the run -----------
def initialize_distributed(config) -> None:
  """``jax.distributed.initialize`` behind ``config.distributed.initialize``."""
  import jax
  d = config.distributed
  if not d.initialize:
    return
  kwargs = {k: v for k, v in (("coordinator_address", d.coordinator_address),
                              ("num_processes", d.num_processes),
                              ("process_id", d.process_id)) if v is not None}
  try:  # CPU collectives across processes (local multi-process runs); no-op elsewhere
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except Exception:  # pragma: no cover - option absent in some jax versions
    pass
  jax.distributed.initialize(**kwargs)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class _QuietLibraries:
  """Drops INFO records of chatty libraries (Orbax logs every save step by step)."""

  def filter(self, record):
    import logging as std_logging
    return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def _expected_errors() -> tuple:
  """Errors that end a run with their message alone (it says what to do)."""
  from mssl import checkpoint, loop, validation, workdir
  return (validation.ConfigError, loop.NonFiniteLossError, loop.CheckpointWriteError,
          workdir.WorkdirError, checkpoint.CheckpointStructureError, CommandLineError,
          loop.Interrupted)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the GPUs for JAX
  config = _CONFIG.value
  expected = _expected_errors()
  try:
    if "base" in _STATE:
      explicit = config_flags.get_override_values(flags.FLAGS["config"])
      switch_objective(config, _STATE["base"], _STATE.get("loss", {}), explicit)
      _set_none(config, _STATE.get("nones", {}))
    initialize_distributed(config)
    from mssl import train
    train.train_and_evaluate(config, _WORKDIR.value)
  except expected as error:
    logging.error("%s: %s", type(error).__name__, error)
    # A stop by a signal exits as the signal would have (128 + its number), so a
    # scheduler or shell still sees an interrupted job.
    sys.exit(128 + error.signum if hasattr(error, "signum") else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
