"""Run families: which step module runs an objective, read from what the objective consumes.

A pretraining objective's registry entry (:mod:`mssl.losses.registry`) records its
``inputs``; the family is the step module that produces them:

==============================================  ======================================
``inputs``                                      family (module of ``mssl.steps``)
==============================================  ======================================
``two_branch``, ``pair``, ``multi_view``        ``two_view``: augmented views through an
                                                encoder, projector (and predictor)
``single`` (a regulariser of one batch)         ``masked_image``: a masked auto-encoder
                                                whose CLS batch the regulariser sees
==============================================  ======================================

Every family module has the same face, which the trainer, export, validation and
fine-tuning use through :func:`family_of` instead of testing objective names:

* ``NAME``; ``POS_EMBEDDING`` (a ViT encoder's position embedding: ``"learned"`` or
  MAE's fixed ``"sincos"``);
* ``build_network(config, num_classes)``, ``init_variables(network, image_size, seed)``,
  ``make_optimizer(config, total_steps, steps_per_epoch)``,
  ``initial_state(variables, tx, config)`` (a :class:`mssl.steps.state.TrainState`),
  ``make_train_step(config, network, tx, schedule, total_steps, steps_per_epoch)``;
* ``encoder_variables(variables)``: the variables ``network.embed`` reads, from a train
  state's ``variables`` or from those of :func:`init_variables`;
  ``encoder_params(params)``: the encoder's own subtree (what export writes);
  ``evaluator_apply(network)``: the evaluator's ``apply(variables, images) -> outputs``;
* ``check_config(config, check)`` and ``trace_objective(config)``: the family's own
  config checks (:mod:`mssl.validation` calls them);
* ``preview_images(network, params, images, seed) -> {"original", "masked",
  "reconstruction"}`` or None: what the trainer draws as ``reconstructions.png`` at the
  end of training.

A new family is one module with this face, an entry in :data:`FAMILY_MODULES` and the
``inputs`` kind it feeds in :data:`FAMILY_OF_INPUTS` (and the registry's ``INPUTS``).
"""

from __future__ import annotations

import importlib

from mssl import losses

# What an objective consumes (its registry entry's ``inputs``) -> the family feeding it.
FAMILY_OF_INPUTS = {"two_branch": "two_view", "pair": "two_view", "multi_view": "two_view",
                    "single": "masked_image"}
# Each family's step module (named in full, so that the import graph of
# tests/test_architecture.py sees it).
FAMILY_MODULES = {"two_view": "mssl.steps.two_view", "masked_image": "mssl.steps.masked_image"}
FAMILIES = tuple(FAMILY_MODULES)


def family_name(objective: str) -> str:
  """The family of a registered objective (raises ValueError naming the registered ones
  for an unknown name)."""
  return FAMILY_OF_INPUTS[losses.spec(objective).inputs]


def family_of(config_or_objective):
  """The step module (:data:`FAMILIES`) of a pretraining config or objective name."""
  objective = (config_or_objective if isinstance(config_or_objective, str)
               else config_or_objective.objective)
  return importlib.import_module(FAMILY_MODULES[family_name(objective)])


def objectives_of(name: str) -> list[str]:
  """The registered objectives of family ``name``."""
  return [o for o in losses.names() if family_name(o) == name]


def vit_encoder(config, **kwargs):
  """The ViT encoder of a pretraining ``config`` on its own (no heads, no decoder) with its
  family's position embedding: what an export folder holds and fine-tuning starts from.
  ``kwargs``: :func:`mssl.models.vit`'s (``drop_path``, ``dtype``, ``remat``)."""
  from mssl import models
  return models.vit(config.model.name[len("vit_"):], patch_size=config.model.patch_size,
                    image_size=config.data.image_size,
                    pos_embedding=family_of(config).POS_EMBEDDING, **kwargs)
