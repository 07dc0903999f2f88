"""Checkpoints: an Orbax ``CheckpointManager`` holding the train state and the input position.

* Saves are asynchronous (training goes on while the arrays are written), keep the
  ``max_to_keep`` newest, and are atomic: Orbax writes into a temporary directory and
  renames it only once complete, so a run killed mid-save leaves the previous checkpoint
  as the latest one.
* :meth:`Checkpointer.restore_latest` walks the saved steps from the newest down and
  restores the first one that reads back completely; a corrupt or truncated checkpoint
  is skipped with a warning and moved aside to ``<directory>_unreadable/<step>`` (kept
  for inspection, and out of the way of the step being saved again).
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
import orbax.checkpoint as ocp


class Checkpointer:
  """Save / restore ``(state pytree, JSON metadata)`` pairs under ``directory``."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, asynchronous: bool = True):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           enable_async_checkpointing=asynchronous,
                                           create=True)
    self.directory = directory
    self._manager = ocp.CheckpointManager(directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, metadata: dict) -> None:
    """Starts an (asynchronous) save of ``state`` with JSON ``metadata`` at ``step``."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(metadata)), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def restore_latest(self, abstract_state: Any) -> Optional[tuple[int, Any, dict]]:
    """``(step, state, metadata)`` of the newest readable checkpoint, or None."""
    found = None
    unreadable = []
    for step in reversed(self.all_steps()):
      try:
        state, meta = self.restore(step, abstract_state)
        found = (step, state, meta)
        break
      except Exception as error:  # a half-written or corrupted checkpoint
        logging.warning("checkpoint at step %d in %s could not be read (%s: %s); falling "
                        "back to the previous one.", step, self.directory,
                        type(error).__name__, str(error)[:300])
        unreadable.append(step)
    if unreadable:
      self._move_aside(unreadable)
    return found

  def _move_aside(self, steps) -> None:
    import jax
    if jax.process_index() == 0:
      target = f"{os.path.normpath(self.directory)}_unreadable"
      os.makedirs(target, exist_ok=True)
      for step in steps:
        shutil.move(os.path.join(self.directory, str(step)),
                    os.path.join(target, f"{step}-{int(time.time())}"))
    self._manager.reload()

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
