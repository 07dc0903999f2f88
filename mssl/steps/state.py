"""The train state: one typed structure that every step takes and returns.

Every run holds the same core (the step count, the parameters, the optimiser state and the
RNG the step folds its count into); a family adds what its network or objective needs:

==================  ==========================================================
field               held by
==================  ==========================================================
``batch_stats``     two-view networks (BatchNorm running statistics; ``{}`` for
                    a ViT encoder)
``ema_params``,     two-view objectives whose registry ``teacher`` is ``"ema"``
``ema_batch_stats`` (Matrix-SSL, MEC, Kernel-SSL, BYOL): the EMA teacher
==================  ==========================================================

A field a run does not hold is None, which is an empty subtree: jit, sharding and
donation see only the arrays that are there.

Checkpoints hold the state as a dict of the fields that are set, by name: the layout runs
saved before the state was typed. :func:`to_saved` and :func:`from_saved` convert at the
checkpoint boundary (:mod:`mssl.loop`), so workdirs written before restore into a
:class:`TrainState`, and the fingerprint each checkpoint records (computed on the dict) is
unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TrainState:
  step: Any                     # int32 scalar: the steps taken so far
  params: Any
  opt_state: Any = None
  rng: Any = None               # uint32 key data; a step folds ``step`` into it
  batch_stats: Any = None       # BatchNorm statistics (two-view networks)
  ema_params: Any = None        # the EMA teacher (two-view objectives with one)
  ema_batch_stats: Any = None

  @property
  def variables(self) -> dict:
    """The network's variables: ``{"params"}``, and ``"batch_stats"`` where the state
    holds them."""
    if self.batch_stats is None:
      return {"params": self.params}
    return {"params": self.params, "batch_stats": self.batch_stats}


FIELDS = tuple(field.name for field in dataclasses.fields(TrainState))


def create(params, tx, seed: int, **fields) -> TrainState:
  """The state at step 0: ``tx``'s initial optimiser state for ``params``, the RNG of
  ``seed + 1`` (``seed`` itself initialised the parameters), and ``fields`` (e.g.
  ``batch_stats``, the EMA teacher)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed + 1)), **fields)


def to_saved(state: TrainState) -> dict:
  """The checkpoint's layout of ``state``: ``{field: value}`` for the fields it holds."""
  return {name: getattr(state, name) for name in FIELDS if getattr(state, name) is not None}


def from_saved(tree: dict) -> TrainState:
  """The :class:`TrainState` of a checkpoint's dict (:func:`to_saved`'s inverse); a key
  that is no field raises a ValueError naming the fields."""
  unknown = sorted(set(tree) - set(FIELDS))
  if unknown:
    raise ValueError(f"the saved train state holds {unknown}, which are no fields of the "
                     f"train state; its fields: {', '.join(FIELDS)}.")
  return TrainState(**tree)
