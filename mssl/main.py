"""Entry point: ``python -m mssl.main --config=configs/X.py[:arg] --workdir=DIR``.

The command line is read by pure functions, :func:`parse_command_line` (nothing read) and
:func:`apply_overrides` (the config file's config with the overrides applied), then
:func:`run` does the optional multi-host initialisation and
:func:`mssl.run.train_and_evaluate` (importable on its own, e.g. from a notebook). Any config field can be overridden on the
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

import ast
import copy
import dataclasses
import importlib.util
import os
import sys

from absl import app, logging

_PREFIX = "--config."


class CommandLineError(ValueError):
  """A ``--config...`` argument that does not fit the config file."""


# ------------------------------------------------------------------ the command line --
@dataclasses.dataclass(frozen=True)
class CommandLine:
  """What ``python -m mssl.main ARGS`` was asked: the config file (``FILE[:ARG]``), the
  workdir, the ``--config.FIELD=VALUE`` overrides in order, and every other flag (absl's
  own, e.g. ``--alsologtostderr``)."""
  config: str
  workdir: str
  overrides: tuple = ()        # ((dotted field, text value), ...)
  other_flags: tuple = ()


def parse_command_line(argv) -> CommandLine:
  """``argv`` (``sys.argv``: the program, then the flags) as a :class:`CommandLine`;
  nothing is read or imported. Raises CommandLineError for a missing ``--config`` or
  ``--workdir``, a bare argument, or a ``--config.FIELD`` without ``=VALUE``."""
  found = {"config": None, "workdir": None}
  overrides, other = [], []
  args = list(argv[1:])
  i = 0
  while i < len(args):
    arg = args[i]
    name = arg[2:].partition("=")[0] if arg.startswith("--") else None
    if name in found:
      if "=" in arg:
        found[name] = arg.partition("=")[2]
      elif i + 1 < len(args):
        found[name] = args[i + 1]
        i += 1
      else:
        raise CommandLineError(f"--{name} needs a value (--{name}=...).")
    elif arg.startswith(_PREFIX):
      field, equals, value = arg[len(_PREFIX):].partition("=")
      if not equals or not field:
        raise CommandLineError(f"{arg}: a config field is set as --config.FIELD=VALUE.")
      overrides.append((field, value))
    elif arg.startswith("-"):
      other.append(arg)
    else:
      raise CommandLineError(f"unexpected argument {arg!r}; the command line is "
                             "--config=FILE[:ARG] --workdir=DIR [--config.FIELD=VALUE ...].")
    i += 1
  missing = [f"--{k}" for k, v in found.items() if not v]
  if missing:
    raise CommandLineError(f"{' and '.join(missing)} must be given: python -m mssl.main "
                           "--config=configs/X.py[:ARG] --workdir=DIR.")
  return CommandLine(found["config"], found["workdir"], tuple(overrides), tuple(other))


def make_importable(config_file: str) -> None:
  """Lets a config file import its siblings (``from configs import common``) from any
  working directory: the folder holding its package goes on ``sys.path``."""
  folder = os.path.dirname(os.path.abspath(config_file))
  root = os.path.dirname(folder) if os.path.exists(
      os.path.join(folder, "__init__.py")) else folder
  if root not in sys.path:
    sys.path.insert(0, root)


def load_config_file(spec: str):
  """The config ``FILE[:ARG]`` defines (its ``get_config(ARG)``)."""
  path, _, arg = spec.partition(":")
  make_importable(path)
  module_spec = importlib.util.spec_from_file_location("mssl_config_file", path)
  if module_spec is None or not os.path.isfile(path):
    raise CommandLineError(f"--config={spec}: {path!r} is not a Python file.")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


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


def _parse_value(text: str):
  """A command-line value as Python: a literal (number, bool, None, tuple, ...), else the
  text itself (a string such as exact / gaussian)."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _field_type(config, field: str):
  """The type a field holds: its value's, or the declared type of a typed ``None``
  (``FieldReference(None, field_type=str)``); None for an untyped ``None``."""
  import ml_collections
  *path, last = field.split(".")
  node = config
  for part in path:
    node = node[part]
  reference = node._fields.get(last)  # pylint: disable=protected-access
  if isinstance(reference, ml_collections.FieldReference):
    return reference.get_type()
  value = node[last]
  return None if value is None else type(value)


def _typed_value(field: str, text: str, kind):
  """``text`` as the field's type ``kind`` (:func:`_field_type`): a string field takes the
  text as it is, a bool field true/false in any case, a tuple field a list or tuple
  literal, any other a Python literal (else the text)."""
  if kind is str:
    return text
  if kind is bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
      return True
    if lowered in ("false", "0"):
      return False
    raise CommandLineError(f"--config.{field}={text}: config.{field} is True or False.")
  value = _parse_value(text)
  if kind is tuple and isinstance(value, list):
    return tuple(value)
  return value


def _assign(config, field: str, value) -> None:
  *path, last = field.split(".")
  node = config
  for part in path:
    node = node[part]
  with config.unlocked():
    try:
      node[last] = value
    except (TypeError, ValueError) as error:
      raise CommandLineError(f"--config.{field}={value!r} does not fit config.{field}: "
                             f"{error}") from None


def apply_overrides(base, overrides) -> object:
  """The config ``base`` (the file's) with the ``(field, text)`` overrides of the command
  line applied, each checked against ``base`` first (a field it does not have is an error
  naming the fields it has); ``=None`` unsets a field. Switching the objective replaces
  ``config.loss`` by the new objective's defaults with its ``--config.loss.KEY`` values
  (:func:`switch_objective`). ``base`` is not modified; the result is locked."""
  config = copy.deepcopy(base)  # FieldReferences (typed None fields) kept
  objective = next((v for f, v in overrides if f == "objective"), base.get("objective"))
  switched = objective != base.get("objective")
  new_loss = {}
  for field, text in overrides:
    if switched and field.startswith("loss."):
      new_loss[field[len("loss."):]] = text
      continue
    try:
      _lookup(base, field)
    except KeyError as error:
      suffix = "=None" if text == "None" else ""
      raise CommandLineError(f"--config.{field}{suffix}: {error.args[0]}") from None
    _assign(config, field, None if text == "None" else
            _typed_value(field, text, _field_type(config, field)))
  switch_objective(config, base, new_loss)
  config.lock()
  return config


def switch_objective(config, base, explicit_loss: dict) -> None:
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


def config_of(command: CommandLine):
  """The config a :class:`CommandLine` runs: its file's, with the overrides applied."""
  return apply_overrides(load_config_file(command.config), command.overrides)


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


def run_command(config, workdir: str) -> None:
  """The run of a parsed command line (absl has set up logging): multi-host
  initialisation, then :func:`mssl.run.train_and_evaluate`; an expected error ends it
  with its message and exit status 1 (a stop signal's: 128 + its number)."""
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the GPUs for JAX
  expected = _expected_errors()
  try:
    initialize_distributed(config)
    from mssl import run
    run.train_and_evaluate(config, workdir)
  except expected as error:
    logging.error("%s: %s", type(error).__name__, error)
    # A stop by a signal exits as the signal would have (128 + its number), so a
    # scheduler or shell still sees an interrupted job.
    sys.exit(128 + error.signum if hasattr(error, "signum") else 1)


def cli(argv=None) -> None:
  """``python -m mssl.main``: parse the command line and load the config (a mistake in
  either ends here with one ``FATAL`` line and exit status 2, before anything is built),
  then :func:`run` under absl (which takes the flags that are not mssl's)."""
  argv = list(sys.argv if argv is None else argv)
  spec = None
  try:
    command = parse_command_line(argv)
    spec = command.config
    config = config_of(command)
  except Exception as error:  # the config file's own errors (ConfigArgError, ...)
    sys.stderr.write(f"FATAL: {type(error).__name__}: {error}{_where(error, spec)}\n")
    sys.exit(2)

  def main(unused_argv):
    run_command(config, command.workdir)
  app.run(main, argv=[argv[0], *command.other_flags])


if __name__ == "__main__":
  cli()
