"""A registry mapping config names to objectives.

Each entry records what the objective consumes, so the trainer knows what to feed it:

* ``"two_branch"``: ``fn(z1, z2, p1, p2, **hparams)``: online outputs ``z`` (after the
  predictor) and target outputs ``p`` (EMA teacher or, for SimSiam, the projector).
* ``"pair"``: ``fn(z1, z2, **hparams)``: the two views' projections.
* ``"multi_view"``: ``fn(views, **hparams)``: a sequence of V >= 2 projections.
* ``"single"``: ``fn(z, **hparams)``: one batch (the M-MAE / U-MAE regularisers).

Every objective returns ``(loss, aux)``, ``aux`` a dict of scalar components.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

INPUTS = ("two_branch", "pair", "multi_view", "single")


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  fn: Callable
  inputs: str
  uses_teacher: bool  # the target branch is an EMA teacher (else: the online network)
  min_views: int = 2


_REGISTRY: dict[str, Objective] = {}


def register(name: str, *, inputs: str, uses_teacher: bool = False, min_views: int = 2):
  """Decorator: registers ``fn`` under ``name``."""
  if inputs not in INPUTS:
    raise ValueError(f"inputs must be one of {INPUTS}; got {inputs!r}.")

  def decorate(fn):
    if name in _REGISTRY:
      raise ValueError(f"objective {name!r} is already registered.")
    _REGISTRY[name] = Objective(name, fn, inputs, uses_teacher, min_views)
    return fn
  return decorate


def spec(name: str) -> Objective:
  """The registry entry for ``name`` (raises ValueError naming the known objectives)."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown objective {name!r}; registered objectives: "
                     f"{', '.join(sorted(_REGISTRY))}.")
  return _REGISTRY[name]


def get(name: str) -> Callable:
  """The objective function registered under ``name``."""
  return spec(name).fn


def names() -> list[str]:
  return sorted(_REGISTRY)
