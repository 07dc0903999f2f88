"""Supervised fine-tuning of a pretrained ViT encoder, the MAE way.

    python -m mssl.main --config=configs/finetune.py --workdir=FT_DIR \\
        --config.pretrained_workdir=PRETRAIN_DIR

The encoder comes from the pretraining workdir's newest readable checkpoint
(:mod:`mssl.export` reads only its parameters), or, with ``config.finetune.init="random"``,
is the same architecture at random initialisation (the baseline a pretraining run has to
beat: the same fine-tune, budget and seed, without the pretraining). The data fields are
the pretraining run's with this run's laid over them (:func:`mssl.export.downstream_data`);
the step, the recipe and what is reported are :mod:`mssl.steps.finetune`'s; the loop is
:mod:`mssl.loop`'s.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from mssl import export, loop, sharding, writers
from mssl.data import training_input as training_input_lib
from mssl.eval.evaluator import Evaluator
from mssl.models.vit import VIT_SIZES
from mssl.steps import finetune
from mssl.steps import state as state_lib


def train_and_evaluate(config, workdir: str) -> dict:
  """Fine-tunes the pretrained encoder of ``config.pretrained_workdir``; see the docstring."""
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  pre_config, data_config = export.downstream_data(config)
  run_config = config.copy_and_resolve_references()
  with run_config.unlocked():
    run_config.data = data_config
  mesh = sharding.make_mesh()
  data_config.num_views, data_config.num_small_crops = 1, 0  # one view per image
  data = training_input_lib.training_input(config, data_config)
  if data.split.num_classes is None:
    raise ValueError(f"config.data.dataset={data_config.dataset!r} has no class labels; "
                     "fine-tuning needs a labelled dataset.")
  num_classes = data.num_classes
  classifier = finetune.build_classifier(pre_config, num_classes, config.finetune.drop_path)
  depth = VIT_SIZES[pre_config.model.name[len("vit_"):]][1]
  from_random = config.finetune.get("init", "pretrained") == "random"
  if from_random:
    encoder_params, pretrained_step = None, 0
  else:
    encoder_params, pretrained_step = export.load_encoder_params(config.pretrained_workdir)

  def init_state():
    dummy = jnp.zeros((2, data_config.image_size, data_config.image_size, 3))
    params = classifier.init(jax.random.key(config.seed), dummy)["params"]
    if encoder_params is not None:
      params = dict(params, encoder=encoder_params)
    return params

  params = init_state()
  tx, schedule = finetune.make_optimizer(config, params, depth, data.total_steps,
                                data.steps_per_epoch)
  state = jax.device_put(state_lib.create(params, tx, config.seed),
                         sharding.replicated(mesh))
  train_step = loop.jit_train_step(data.augment_on_device(
      finetune.make_train_step(config, classifier, tx, schedule, num_classes)), mesh)
  evaluator = Evaluator(
      run_config, mesh, num_classes, knn=False,
      apply=lambda v, x: classifier.apply({"params": v["params"]}, x,
                                          method=classifier.outputs),
      logits_metric="eval/accuracy")
  writer = writers.create_writer(workdir, is_main=is_main)
  job = loop.Job(objective="finetune", state=state, train_step=train_step,
                 make_data=data.make_data, evaluate=evaluator,
                 total_steps=data.total_steps,
                 run_info=data.run_info(pretrained_workdir=config.pretrained_workdir,
                                        pretrained_step=int(pretrained_step),
                                        init="random" if from_random else "pretrained"))
  outcome = loop.run(run_config, workdir, job, mesh, writer)
  results = {"steps": int(outcome.state.step), "train_seconds": outcome.train_seconds,
             "pretrained_step": int(pretrained_step), **outcome.eval_metrics}
  writer.close()
  if not outcome.finished:
    return {**results, "stopped_early": True}
  loop.write_results(workdir, results)
  if is_main and "eval/accuracy" in results:
    start = ("random initialisation" if from_random
             else f"pretraining step {pretrained_step}")
    print(f"fine-tuned top-1 accuracy {100 * results['eval/accuracy']:.2f}% (from {start})")
  return results
