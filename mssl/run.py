"""The one entry point for every run: ``train_and_evaluate(config, workdir)``.

    from mssl import run
    results = run.train_and_evaluate(config, workdir)     # a notebook, a script

``python -m mssl.main`` calls the same function. It validates the config (before anything
is built or compiled), takes the workdir's lock (one run per workdir), points XLA's
persistent compilation cache at the workdir (a restarted run does not compile again), and
hands the run to its trainer, the only place where a kind of run is chosen:

==============================  ==========================================
``config.mode="linear_eval"``   :mod:`mssl.trainers.linear_eval`
``config.mode="finetune"``      :mod:`mssl.trainers.finetune`
``config.mode="language_model"`` :mod:`mssl.trainers.language_model` (CE or CE + MCE)
``config.mode="pretrain"``      :mod:`mssl.trainers.pretraining` (every objective; its
                                family, :mod:`mssl.steps.family`, builds the step)
==============================  ==========================================

Returns the final metrics (and, with ``config.eval.final``, the offline linear-probe and
kNN accuracies beside those of a randomly initialised encoder and of the raw pixels).
The layers below are described in ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
import os

import jax
import ml_collections

from mssl import validation
from mssl import workdir as workdir_lib


TRAINERS = {"pretrain": "mssl.trainers.pretraining", "linear_eval": "mssl.trainers.linear_eval",
            "finetune": "mssl.trainers.finetune",
            "language_model": "mssl.trainers.language_model"}


def trainer_module(config) -> str:
  """The module of the trainer that runs ``config`` (imported only when it runs)."""
  return TRAINERS[config.mode]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Validates ``config``, then runs its trainer on ``workdir`` (resuming from its
  checkpoints); see the module docstring."""
  validation.validate(config)
  trainer = importlib.import_module(trainer_module(config))
  # One run per workdir: a second process on it stops here, naming the first.
  with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
    # A workdir file that cannot be read is reported now, before anything is built.
    for name in ("config.json", "run.json"):
      workdir_lib.read_json(os.path.join(workdir, name))
    workdir_lib.enable_compilation_cache(config, workdir)
    return trainer.train_and_evaluate(config, workdir)
