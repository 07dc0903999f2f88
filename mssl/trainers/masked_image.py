"""Masked-image pretraining: M-MAE, U-MAE and MAE.

    python -m mssl.main --config=configs/mmae_vitb.py --workdir=DIR

The step is :mod:`mssl.steps.masked_image`'s (the network, the objective, what is
logged); everything around it is :func:`mssl.pretraining.pretrain`'s. At the end, besides
the plots and the offline probe of every run: ``reconstructions.png`` (original, masked
input, reconstruction).
"""

from __future__ import annotations

import os

import jax

from mssl import export, pretraining, sharding
from mssl.data import training_input as training_input_lib
from mssl.evaluator import Evaluator
from mssl.steps import masked_image


def train_and_evaluate(config, workdir: str) -> dict:
  """Masked-image pretraining (resuming from ``workdir``), then evaluation."""
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  data = training_input_lib.training_input(config)
  network = masked_image.build_network(config)
  tx, schedule = masked_image.make_optimizer(config, data.total_steps, data.steps_per_epoch)
  init = jax.jit(lambda: masked_image.create_state(
      masked_image.init_params(network, config.data.image_size, config.seed), tx,
      config.seed), out_shardings=sharding.replicated(mesh))

  evaluator = Evaluator(config, mesh, data.num_classes,
                        apply=export.embed_outputs(network))

  def write_previews(state):
    params = sharding.to_host(state["params"])  # every process takes part in the gather
    if jax.process_index() == 0:
      from mssl import plots  # matplotlib
      sample = next(evaluator.eval_batches())["image"][: config.eval.num_previews]
      plots.write_reconstructions(
          os.path.join(workdir, "reconstructions.png"),
          **masked_image.reconstructions(network, params, sample, config.seed))

  return pretraining.pretrain(
      config, workdir, mesh, state=init(),
      train_step=data.augment_on_device(masked_image.make_train_step(
          config, network, tx, schedule, data.total_steps)),
      evaluator=evaluator, make_data=data.make_data, run_info=data.run_info(),
      variables_of=lambda s: {"params": s["params"]},
      random_variables=lambda: {"params": masked_image.init_params(network, config.data.image_size,
                                                      config.seed + 12345)},
      after_training=write_previews)
