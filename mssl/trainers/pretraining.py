"""Self-supervised pretraining, every family alike: two-view (Matrix-SSL, Kernel-SSL, MEC,
FroSSL, SimCLR, BYOL, SimSiam, Barlow Twins, VICReg, spectral contrastive) and masked-image
(M-MAE, U-MAE, MAE).

    python -m mssl.main --config=configs/mssl_r50.py --workdir=DIR

The data path runs one way: ``config -> input pipeline (per process) -> global sharded
batch -> jitted step (device augmentation -> network -> embeddings -> objective -> optax)
-> checkpoint / logs / evaluators``. What is family-specific (the network, the initial
state, the step, the encoder's variables, the evaluator's outputs, the previews drawn as
``reconstructions.png``) comes from the objective's family
(:func:`mssl.steps.family.family_of`); this module reads top to bottom:

1. build the input, the network, the optimiser and the replicated initial state
   (``config.init_from``: the encoder from a torchvision ResNet or timm ViT state dict,
   :func:`mssl.export.init_encoder`);
2. train with :func:`mssl.loop.run` (resume, checks, logs, periodic evaluation, saves);
3. after the last step: the plots (``loss.png``, ``effective_rank.png``, ``spectrum.png``,
   ``embedding.png``) and the family's previews (``reconstructions.png``);
4. with ``config.eval.final``: the offline linear probe and kNN of the pretrained encoder,
   beside the same encoder at random initialisation and the raw pixels, printed and saved
   to ``results.json``.

A kill during step 4 is made good by the next run (it evaluates the finished workdir
again); a finished workdir's ``results.json`` is kept unless
``config.eval.reevaluate=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax

from mssl import export, loop, sharding, writers
from mssl.eval import evaluator as evaluator_lib
from mssl.eval import table
from mssl.data import training_input as training_input_lib
from mssl.steps import family as family_lib

RANDOM_INIT_SEED_OFFSET = 12345  # the random-init row's encoder: seed + this


def train_and_evaluate(config, workdir: str) -> dict:
  """Pretrains (resuming from ``workdir``), then evaluates; see the module docstring."""
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  steps = family_lib.family_of(config)
  mesh = sharding.make_mesh()
  data = training_input_lib.training_input(config)
  network = steps.build_network(config, data.num_classes)
  tx, schedule = steps.make_optimizer(config, data.total_steps, data.steps_per_epoch)
  size = config.data.image_size
  variables = jax.jit(lambda: steps.init_variables(network, size, config.seed))()
  if config.get("init_from"):  # the encoder from torchvision / timm weights
    variables = export.init_encoder(variables, config.init_from, config)
  state = jax.jit(lambda v: steps.initial_state(v, tx, config),
                  out_shardings=sharding.replicated(mesh))(variables)
  train_step = loop.jit_train_step(data.augment_on_device(steps.make_train_step(
      config, network, tx, schedule, data.total_steps, data.steps_per_epoch)), mesh)
  evaluator = evaluator_lib.Evaluator(config, mesh, data.num_classes,
                                      apply=steps.evaluator_apply(network))

  writer = writers.create_writer(workdir, is_main=is_main)
  run_info = data.run_info()
  job = loop.Job(objective=config.objective, state=state, train_step=train_step,
                 make_data=data.make_data, evaluate=evaluator,
                 total_steps=run_info["total_steps"], run_info=run_info)
  outcome = loop.run(config, workdir, job, mesh, writer)
  state = outcome.state
  saved = loop.read_results(workdir)
  if outcome.finished and not outcome.already_finished and is_main:
    # Kept before the final evaluation, which a kill may interrupt: the rerun reads it.
    loop.save_run_info(workdir, {**loop.read_run_info(workdir, run_info),
                                 "train_seconds": outcome.train_seconds})
  if outcome.already_finished and saved is None:
    # Trained to the end, but stopped before results.json (a kill during the final
    # evaluation): evaluate again, with the training time the finished run recorded.
    logging.warning("the workdir %s finished training (step %d) but holds no "
                    "results.json (stopped during its final evaluation?): evaluating it "
                    "again.", workdir, int(state.step))
    recorded = loop.read_run_info(workdir, {}).get("train_seconds", 0.0)
    outcome = dataclasses.replace(outcome, train_seconds=recorded,
                                  eval_metrics=evaluator(state))
  if outcome.already_finished and saved is not None and not config.eval.get("reevaluate",
                                                                            False):
    logging.warning("the workdir %s holds a finished run (step %d); its results.json is "
                    "kept as it is. Set --config.eval.reevaluate=True to evaluate it again, "
                    "or raise config.total_steps / num_epochs to train on.", workdir,
                    int(state.step))
    writer.close()
    return saved
  results = {"steps": int(state.step), "train_seconds": outcome.train_seconds,
             **outcome.eval_metrics}
  if outcome.already_finished and saved is not None:  # re-evaluated: keep what it measured
    results = {**saved, **{k: v for k, v in results.items() if k != "train_seconds"}}
  if not outcome.finished:  # stopped early (preemption, stop_after): resume later
    writer.close()
    return {**results, "stopped_early": True}

  if is_main:
    from mssl import plots  # matplotlib
    plots.write_training_plots(workdir, evaluator.spectrum())
    write_embedding_plot(config, workdir, evaluator)
  if steps.preview_images is not None:
    write_previews(config, workdir, steps.preview_images, network, state, evaluator)
  if config.eval.final:
    final = final_evaluation(config, mesh, evaluator, steps.encoder_variables(state.variables),
                             lambda: steps.encoder_variables(steps.init_variables(
                                 network, size, config.seed + RANDOM_INIT_SEED_OFFSET)))
    writer.write_scalars(int(state.step), final)
    results.update(final)
    if is_main:
      print(table.format_results(final))
  writer.flush()
  loop.write_results(workdir, results)
  writer.close()
  return results


def final_evaluation(config, mesh, evaluator, variables, random_variables) -> dict:
  """The offline linear probe and kNN (``{row}/linear_probe``, ``{row}/knn``) of the
  pretrained encoder's ``variables``, of ``random_variables()`` (with
  ``config.eval.compare_random_init``) and of the raw pixels (``compare_pixels``)."""
  rows = [("pretrained", lambda: variables, False)]
  if config.eval.compare_random_init:
    rows.append(("random_init", lambda: sharding.replicate(mesh, random_variables()), False))
  if config.eval.get("compare_pixels", True):
    rows.append(("pixels", dict, True))
  return {f"{row}/{k}": v for row, make, pixels in rows
          for k, v in evaluator.probe(make(), pixels=pixels).items()}


def write_previews(config, workdir: str, preview_images, network, state, evaluator) -> None:
  """``reconstructions.png``: the family's previews (original, masked input,
  reconstruction) of the first eval-split images; every process takes part in gathering
  the parameters, process 0 draws."""
  params = sharding.to_host(state.params)
  if jax.process_index() == 0:
    from mssl import plots  # matplotlib
    sample = next(evaluator.eval_batches())["image"][: config.eval.num_previews]
    plots.write_reconstructions(os.path.join(workdir, "reconstructions.png"),
                                **preview_images(network, params, sample, config.seed))


def write_embedding_plot(config, workdir: str, evaluator) -> None:
  """``embedding.png`` from the final evaluation's features (``config.eval.embedding_plot``:
  auto, umap, tsne, pca or none), after training, off the step's path."""
  from mssl import plots
  method = config.eval.get("embedding_plot", "auto")
  found = evaluator.last_features
  if method == "none" or found is None or len(found[1]) < 3:
    return
  name = plots.write_embedding(os.path.join(workdir, "embedding.png"), *found, method,
                               seed=config.seed)
  logging.info("embedding.png: %d eval-split points drawn with %s", len(found[1]), name)
