"""Self-supervised objectives: pure functions of the global batch of embeddings.

Each returns ``(loss, aux)`` with ``aux`` a dict of scalar components; ``get(name)`` returns
the objective registered under a config name, ``spec(name)`` its registry entry (what it
consumes). In two-branch objectives ``z1, z2`` are the online outputs and ``p1, p2`` the
target outputs; the objective applies the stop-gradients itself.
"""

import inspect

from mssl.losses.registry import (DOMAINS, Objective, StepContext, bind, check_keywords, get,
                                  keywords, names, register, schedule_settings, spec)
from mssl.losses.matrix_ssl import (matrix_alignment, matrix_ssl, matrix_uniformity, mec,
                                    mec_lam_inv, mec_lam_inv_schedule, mec_trace)
from mssl.losses.kernel_ssl import kernel_ssl
from mssl.losses.masked import (masked_image_objective, mmae_regularizer, reconstruction_loss,
                                umae_regularizer)
from mssl.losses.frossl import frossl
from mssl.losses.contrastive import simclr, spectral_contrastive
from mssl.losses.redundancy import barlow_twins, vicreg
from mssl.losses.predictive import byol, simsiam

__all__ = [
    "DOMAINS", "Objective", "StepContext", "bind", "check_keywords", "get",
    "keywords", "schedule_settings",
    "loss_defaults", "loss_keywords", "loss_kwargs", "names",
    "register", "spec",
    "matrix_ssl", "matrix_uniformity", "matrix_alignment", "mec", "mec_lam_inv",
    "mec_lam_inv_schedule", "mec_trace", "kernel_ssl", "masked_image_objective",
    "mmae_regularizer", "reconstruction_loss",
    "umae_regularizer", "frossl", "simclr", "spectral_contrastive", "barlow_twins",
    "vicreg", "byol", "simsiam",
]


def loss_keywords(objective: str) -> dict:
  """The ``config.loss`` keys of ``objective`` with their defaults: the registered
  function's keyword arguments (a scheduled one defaults to None: its schedule), its
  schedules' settings and, for a masked-image regulariser (run inside
  :func:`masked_image_objective`), that function's own (``lam``, ...)."""
  allowed = dict(keywords(objective))
  allowed.update({k: None for k, _ in spec(objective).schedules})
  allowed.update(schedule_settings(objective))
  if spec(objective).inputs == "single":  # run inside masked_image_objective
    allowed.update({k: v for k, v in keywords(masked_image_objective).items()
                    if k != "regularizer"})
  return allowed


def loss_defaults(objective: str) -> dict:
  """:func:`loss_keywords` without the required ones (an objective's own hyperparameter
  without a default)."""
  return {k: v for k, v in loss_keywords(objective).items()
          if v is not inspect.Parameter.empty}


def loss_kwargs(loss_block) -> dict:
  """A config's ``loss`` block as keyword arguments (lists, as JSON gives them back, as
  tuples)."""
  return {k: (tuple(v) if isinstance(v, list) else v) for k, v in loss_block.items()}
