"""Checkpoints: an Orbax ``CheckpointManager`` holding the train state and the input position.

* Saves are asynchronous (training goes on while the arrays are written), keep the
  ``max_to_keep`` newest, and are atomic: Orbax writes into a temporary directory and
  renames it only once complete, so a run killed mid-save leaves the previous checkpoint
  as the latest one.
* :meth:`Checkpointer.restore_latest` walks the saved steps from the newest down and
  restores the first one that reads back completely; a corrupt or truncated checkpoint
  is skipped with a warning and moved aside to ``<directory>_unreadable/<step>`` (kept
  for inspection, and out of the way of the step being saved again).
* Each save records a fingerprint of the state (:func:`fingerprint`, a position-weighted
  sum of the arrays' bits computed on device) in its metadata; a restore recomputes it,
  and a checkpoint whose bytes changed after the save is treated like an unreadable one.
* Temporary directories a killed save left behind are removed when the manager starts.
* :meth:`Checkpointer.reached_preemption` asks Orbax whether the job received a
  preemption notice (multi-host TPU/GPU jobs), so the loop can save and exit cleanly.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

FINGERPRINT = "state_fingerprint"  # the metadata key
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax's name for a save in progress


class CheckpointMismatchError(ValueError):
  """A checkpoint read back with bytes that differ from those saved."""


class CheckpointStructureError(ValueError):
  """A readable checkpoint of another state structure (model, heads, objective)."""


# What Orbax's restore raises (a ValueError) for a target of another shape or tree: a
# different array shape, a target path missing on disk, or trees with other keys (e.g. an
# optimiser with another parameter group).
STRUCTURE_MISMATCH_TEXTS = ("is not compatible with the stored shape", "Structure mismatch",
                            "tree structures do not match")


def _is_structure_mismatch(error: Exception) -> bool:
  return isinstance(error, ValueError) and any(
      text in str(error) for text in STRUCTURE_MISMATCH_TEXTS)


def _leaf_bits(x: jax.Array) -> jax.Array:
  """The bits of ``x`` as a flat uint32 vector (any dtype of 1, 2, 4 or 8 bytes)."""
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  size = x.dtype.itemsize
  if size == 8:  # bitcast to 32 bits adds a trailing axis of two words
    return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprint(tree) -> jax.Array:
  total = jnp.uint32(0)
  for index, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
    bits = _leaf_bits(leaf)
    # odd, position-dependent weights: a changed or moved word changes the sum (mod 2^32)
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) | 1
    total = total * jnp.uint32(1000003) + jnp.sum(bits * weights, dtype=jnp.uint32) \
        + jnp.uint32(index)
  return total


def fingerprint(tree: Any) -> int:
  """A 32-bit fingerprint of every array's bits in ``tree`` (exact integer arithmetic:
  the same on every device layout and process)."""
  return int(jax.device_get(_fingerprint(tree)))


class Checkpointer:
  """Save / restore ``(state pytree, JSON metadata)`` pairs under ``directory``."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, asynchronous: bool = True,
               read_only: bool = False):
    """``read_only``: for readers of another run's workdir (export, evaluation): nothing
    is created, cleaned up or deleted there."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=asynchronous,
        create=not read_only, cleanup_tmp_directories=not read_only, read_only=read_only)
    self.directory = directory
    self._manager = ocp.CheckpointManager(directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, metadata: dict) -> None:
    """Starts an (asynchronous) save of ``state`` with JSON ``metadata`` (and the state's
    fingerprint) at ``step``."""
    metadata = {**metadata, FINGERPRINT: fingerprint(state)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(metadata)), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state and metadata saved at ``step``; raises :class:`CheckpointMismatchError`
    when the arrays read back do not match the fingerprint recorded at the save."""
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    state, meta = out["state"], dict(out["meta"])
    if FINGERPRINT in meta:
      found = fingerprint(state)
      if found != meta[FINGERPRINT]:
        raise CheckpointMismatchError(
            f"the arrays read back do not match the fingerprint recorded when step {step} "
            f"was saved ({meta[FINGERPRINT]} saved, {found} read): its files changed "
            "after the save.")
    return state, meta

  def restore_latest(self, abstract_state: Any) -> Optional[tuple[int, Any, dict]]:
    """``(step, state, metadata)`` of the newest readable checkpoint, or None.

    A checkpoint that cannot be read (truncated, missing files, bytes that no longer match
    its fingerprint) is skipped with one warning and moved aside; one that reads but does
    not fit ``abstract_state`` (another model or objective) raises
    :class:`CheckpointStructureError` and nothing is moved.
    """
    found = None
    unreadable = []
    for step in reversed(self.all_steps()):
      try:
        state, meta = self.restore(step, abstract_state)
        found = (step, state, meta)
        break
      except Exception as error:  # a half-written or corrupted checkpoint
        if _is_structure_mismatch(error):
          raise CheckpointStructureError(
              f"the checkpoint at step {step} in {self.directory} holds a state of another "
              f"shape or structure than this run's ({str(error)[:300]}). It was saved by a "
              "different model, heads or objective; nothing was moved. Run with the "
              "config it was saved with (config.json in the workdir), or use a new "
              "workdir.") from None
        logging.warning("checkpoint at step %d in %s could not be read (%s: %s); falling "
                        "back to the previous one.", step, self.directory,
                        type(error).__name__, str(error)[:300])
        unreadable.append(step)
    if unreadable:
      self._move_aside(unreadable)
    return found

  def read_metadata_latest(self) -> Optional[tuple[int, dict]]:
    """``(step, metadata)`` of the newest checkpoint whose metadata reads (the state is
    not read), or None."""
    for step in reversed(self.all_steps()):
      try:
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return step, dict(out["meta"])
      except Exception as error:  # a half-written checkpoint: try the one before
        logging.warning("the metadata of checkpoint %d in %s could not be read (%s: %s).",
                        step, self.directory, type(error).__name__, str(error)[:300])
    return None

  def restore_subtrees(self, step: int, abstract_subset: Any) -> Any:
    """Only the subtrees of the state saved at ``step`` that ``abstract_subset`` names
    (e.g. ``{"params": ..., "batch_stats": ...}`` of an encoder): the rest (optimiser
    state, teacher) is not read. The fingerprint covers the whole state, so it is not
    checked here; a read failure raises."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_subset)
    with ocp.PyTreeCheckpointer() as reader:
      return reader.restore(os.path.join(self.directory, str(step), "state"),
                            args=ocp.args.PyTreeRestore(item=abstract_subset,
                                                        restore_args=restore_args,
                                                        partial_restore=True))

  def restore_subtrees_latest(self, abstract_subset: Any) -> Optional[tuple[int, Any]]:
    """``(step, subtrees)`` from the newest checkpoint they read from (one warning per
    checkpoint skipped; nothing is moved: this is a reader's view), or None."""
    for step in reversed(self.all_steps()):
      try:
        return step, self.restore_subtrees(step, abstract_subset)
      except Exception as error:  # a half-written or corrupted checkpoint
        logging.warning("checkpoint at step %d in %s could not be read (%s: %s); trying "
                        "the previous one.", step, self.directory, type(error).__name__,
                        str(error)[:300])
    return None

  def _move_aside(self, steps) -> None:
    import jax
    if jax.process_index() == 0:
      target = f"{os.path.normpath(self.directory)}_unreadable"
      os.makedirs(target, exist_ok=True)
      for step in steps:
        shutil.move(os.path.join(self.directory, str(step)),
                    os.path.join(target, f"{step}-{int(time.time())}"))
    self._manager.reload()

  def newest_on_disk(self) -> Optional[int]:
    """The newest complete checkpoint in the directory (re-read from disk)."""
    try:
      self._manager.reload()
      return self._manager.latest_step()
    except Exception:  # pragma: no cover - the directory itself is unreadable
      return None

  def remove_partial(self) -> None:
    """Removes the temporary directories of saves that did not complete (process 0)."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in os.listdir(self.directory):
      if TMP_SUFFIX in name:
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def reached_preemption(self, step: int) -> bool:
    return bool(self._manager.reached_preemption(step))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding structs of a pytree of arrays (the restore target)."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
