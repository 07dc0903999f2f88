"""Two-view self-supervised pretraining (Matrix-SSL, Kernel-SSL, MEC, FroSSL, SimCLR,
BYOL, SimSiam, Barlow Twins, VICReg, spectral contrastive).

    python -m mssl.main --config=configs/mssl_r50.py --workdir=DIR

The data path runs one way: ``config -> input pipeline (per process) -> global sharded
batch -> jitted step (device augmentation -> network -> embeddings -> objective -> optax)
-> checkpoint / logs / evaluators``. The step is :mod:`mssl.steps.two_view`'s; everything
around it is :func:`mssl.pretraining.pretrain`'s. ``config.init_from`` starts the encoder
from a torchvision ResNet or timm ViT state dict (:func:`mssl.export.init_encoder`), e.g. a
supervised initialisation baseline.
"""

from __future__ import annotations

import os

import jax

from mssl import export, pretraining, sharding
from mssl.data import training_input as training_input_lib
from mssl.evaluator import Evaluator
from mssl.steps import two_view


def train_and_evaluate(config, workdir: str) -> dict:
  """Pretrains (resuming from ``workdir``), then evaluates; see :mod:`mssl.train`."""
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  data = training_input_lib.training_input(config)
  network = two_view.build_network(config, data.num_classes)
  tx, schedule = two_view.make_optimizer(config, data.total_steps, data.steps_per_epoch)

  variables = jax.jit(lambda: two_view.init_variables(network, config.data.image_size,
                                                      config.seed))()
  if config.get("init_from"):  # the encoder from torchvision / timm weights
    variables = export.init_encoder(variables, config.init_from, config)
  state = jax.jit(lambda v: two_view.create_state(
      v, tx, config.seed, ema_teacher=two_view.has_ema_teacher(config)),
                  out_shardings=sharding.replicated(mesh))(variables)

  return pretraining.pretrain(
      config, workdir, mesh,
      state=state,
      train_step=data.augment_on_device(two_view.make_train_step(
          config, network, tx, schedule, data.total_steps, data.steps_per_epoch)),
      evaluator=Evaluator(config, mesh, data.num_classes,
                          apply=lambda variables, images: network.apply(
                              variables, images, train=False)),
      make_data=data.make_data, run_info=data.run_info(),
      variables_of=lambda s: {"params": s["params"], "batch_stats": s["batch_stats"]},
      random_variables=lambda: two_view.init_variables(network, config.data.image_size,
                                                       config.seed + 12345))
