"""A registry mapping config names to objectives.

Each entry records what the objective consumes, so the trainer knows what to feed it:

* ``"two_branch"``: ``fn(z1, z2, p1, p2, **hparams)``: online outputs ``z`` (after the
  predictor) and target outputs ``p`` (EMA teacher or, for SimSiam, the projector).
* ``"pair"``: ``fn(z1, z2, **hparams)``: the two views' projections.
* ``"multi_view"``: ``fn(views, **hparams)``: a sequence of V >= 2 projections.
* ``"single"``: ``fn(z, **hparams)``: one batch (the M-MAE / U-MAE regularisers).

Every objective returns ``(loss, aux)``, ``aux`` a dict of scalar components.

An entry also records what the trainer must do around the call, so that no trainer or
check names an objective: its ``teacher`` (see :class:`Objective`) and its per-step
``schedules`` (a keyword argument that follows the step, e.g. MEC's ``lam_inv`` warm-up:
``schedules={"lam_inv": make}``, ``make(context, **settings) -> (step -> value)``, the
settings being ``make``'s keyword-only arguments, set in ``config.loss`` beside the
objective's own; a scheduled keyword given a value in ``config.loss`` is fixed instead).

The registry is also where a config's ``loss`` block is checked before anything is built:
:func:`keywords` lists the hyperparameters an objective takes (read from its signature, so
a new objective needs no table), and :func:`check_keywords` rejects unknown keys and values
outside their domain (``DOMAINS``), naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from typing import Any, Callable

INPUTS = ("two_branch", "pair", "multi_view", "single")


TEACHERS = ("ema", "online", "none")


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  fn: Callable
  inputs: str
  # Where the target branch (``p1, p2``) comes from: an EMA teacher of the online network
  # ("ema": Matrix-SSL, MEC, Kernel-SSL, BYOL), the online network's own projector
  # ("online": SimSiam), or nowhere ("none": the objective takes no target branch).
  teacher: str = "none"
  min_views: int = 2
  # keyword -> make(context: StepContext, **settings) -> (step -> value)
  schedules: tuple = ()

  @property
  def uses_teacher(self) -> bool:
    """The target branch is an EMA teacher."""
    return self.teacher == "ema"


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a schedule may depend on besides its settings."""
  batch_size: int        # global batch
  embedding_dim: int     # width of what the objective sees (the projection)
  steps_per_epoch: int
  total_steps: int


_REGISTRY: dict[str, Objective] = {}


def register(name: str, *, inputs: str, teacher: str = "none", min_views: int = 2,
             schedules: dict | None = None):
  """Decorator: registers ``fn`` under ``name`` (see :class:`Objective` for ``teacher``
  and the module docstring for ``schedules``)."""
  if inputs not in INPUTS:
    raise ValueError(f"inputs must be one of {INPUTS}; got {inputs!r}.")
  if teacher not in TEACHERS:
    raise ValueError(f"teacher must be one of {TEACHERS}; got {teacher!r}.")
  if (teacher != "none") != (inputs == "two_branch"):
    raise ValueError(f"objective {name!r}: a target branch (teacher={teacher!r}) goes with "
                     f"inputs='two_branch' and only with it; got inputs={inputs!r}.")

  def decorate(fn):
    if name in _REGISTRY:
      raise ValueError(f"objective {name!r} is already registered.")
    unknown = sorted(set(schedules or ()) - set(keywords(fn)))
    if unknown:
      raise ValueError(f"objective {name!r}: scheduled keyword(s) {unknown} are not "
                       "keyword arguments of the function.")
    _REGISTRY[name] = Objective(name, fn, inputs, teacher, min_views,
                                tuple(sorted((schedules or {}).items())))
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


def single_batch() -> tuple[str, ...]:
  """The objectives registered with ``inputs="single"``: regularisers of one batch, which
  :func:`mssl.losses.masked_image_objective` adds to a reconstruction loss."""
  return tuple(n for n in names() if _REGISTRY[n].inputs == "single")


# ------------------------------------------------------------------ hyperparameters ---
def keywords(fn_or_name) -> dict[str, Any]:
  """The keyword-only hyperparameters of an objective and their defaults
  (``inspect.Parameter.empty`` for a required one, e.g. MEC's ``lam_inv``)."""
  fn = get(fn_or_name) if isinstance(fn_or_name, str) else fn_or_name
  return {name: p.default for name, p in inspect.signature(fn).parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY}


def schedule_settings(name: str) -> dict[str, Any]:
  """The settings of ``name``'s schedules (their keyword-only arguments) with defaults."""
  out = {}
  for _, make in spec(name).schedules:
    out.update(keywords(make))
  return out


def bind(name: str, values: dict, context: StepContext) -> tuple[dict, dict]:
  """``(fixed keyword arguments, {keyword: step -> value})`` for calling ``name`` with a
  config's loss block ``values``: schedule settings are consumed by the schedules, a
  scheduled keyword left None (or absent) follows its schedule."""
  settings = schedule_settings(name)
  fixed = {k: v for k, v in values.items() if k not in settings}
  scheduled = {}
  for keyword, make in spec(name).schedules:
    if fixed.get(keyword) is None:
      fixed.pop(keyword, None)
      own = {k: v for k, v in values.items() if k in keywords(make)}
      scheduled[keyword] = make(context, **own)
  return fixed, scheduled


def _real(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _positive(x):
  return _real(x) and x > 0


def _non_negative(x):
  return _real(x) and x >= 0


def _positive_int(x):
  return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1


# keyword -> (test, what is allowed). Shared names mean the same thing in every objective
# that takes them (docs/methods.md); keys not listed are checked by the objective itself
# when the validation pass traces it (choices such as ``logm`` and ``kernel``).
DOMAINS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lam": (_non_negative, "a number >= 0"),
    "mu": (_positive, "a number > 0"),
    "gamma": (_non_negative, "a number >= 0"),
    "order": (_positive_int, "an integer >= 1"),
    "lam_inv": (lambda x: x is None or _positive(x), "None (its schedule) or a number > 0"),
    "w_hsic": (_non_negative, "a number >= 0"),
    "bandwidth": (lambda x: x is None or _positive(x), "None (median heuristic) or > 0"),
    "degree": (_positive_int, "an integer >= 1"),
    "coef0": (_non_negative, "a number >= 0"),
    "temperature": (_positive, "a number > 0"),
    "lambd": (_non_negative, "a number >= 0"),
    "scale": (_positive, "a number > 0"),
    "sim_weight": (_non_negative, "a number >= 0"),
    "var_weight": (_non_negative, "a number >= 0"),
    "cov_weight": (_non_negative, "a number >= 0"),
    "invariance_weight": (_non_negative, "a number >= 0"),
    "center": (lambda x: isinstance(x, bool), "True or False"),
    "reference_world_size": (_positive_int, "an integer >= 1"),
    "eps2": (_positive, "a number > 0"),
    "warmup_epochs": (_non_negative, "a number >= 0"),
    "start_factor": (_positive, "a number > 0"),
}


def check_keywords(allowed, values: dict, *, where: str = "config.loss",
                   objective: str = "") -> list[str]:
  """Problems with ``values`` (a loss block) for an objective taking ``allowed`` keywords:
  unknown keys, and values outside :data:`DOMAINS`. Returns messages (empty: all good)."""
  problems = []
  unknown = sorted(set(values) - set(allowed))
  if unknown:
    problems.append(
        f"{where} has {', '.join(unknown)}, which objective {objective!r} does not take; "
        f"allowed: {', '.join(sorted(allowed)) or '(none)'}.")
  for key, value in sorted(values.items()):
    if key in DOMAINS and key in allowed:
      test, allowed_values = DOMAINS[key]
      if not test(value):
        problems.append(f"{where}.{key}={value!r} is not allowed for objective "
                        f"{objective!r}; allowed: {allowed_values}.")
  return problems
