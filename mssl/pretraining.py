"""What every pretraining run does around its step, two-view and masked-image alike.

:func:`pretrain` jits the trainer's step (sharded, donated), runs :func:`mssl.loop.run`,
writes the plots, calls the trainer's hook, then (``config.eval.final``) trains the
offline probe on the pretrained encoder, beside a randomly initialised one and the raw
pixels, prints the table and saves ``results.json``.
"""

from __future__ import annotations

import dataclasses
import logging

import jax

from mssl import evaluate, sharding
from mssl import evaluator as evaluator_lib


def pretrain(config, workdir: str, mesh, *, state, train_step, evaluator,
             make_data, run_info: dict, variables_of, random_variables,
             after_training=None) -> dict:
  """What every pretraining run does around its step (two-view and masked-image alike):
  the sharded, donated jit of ``train_step``, :func:`mssl.loop.run`, the plots, the
  trainer's ``after_training(state)`` hook, then (``config.eval.final``) the offline probe
  of ``variables_of(state)`` beside ``random_variables()``, printed and saved."""
  from mssl import loop, plots, writers
  is_main = jax.process_index() == 0
  step = loop.jit_train_step(train_step, mesh)
  spectrum = []

  def evaluate_and_keep_spectrum(s):
    metrics, last = evaluator(s)
    spectrum[:] = [last]
    return metrics

  writer = writers.create_writer(workdir, is_main=is_main)
  job = loop.Job(objective=config.objective, state=state, train_step=step,
                 make_data=make_data, evaluate=evaluate_and_keep_spectrum,
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
                    "again.", workdir, int(state["step"]))
    recorded = loop.read_run_info(workdir, {}).get("train_seconds", 0.0)
    outcome = dataclasses.replace(outcome, train_seconds=recorded,
                                  eval_metrics=evaluate_and_keep_spectrum(state))
  if outcome.already_finished and saved is not None and not config.eval.get("reevaluate",
                                                                            False):
    logging.warning("the workdir %s holds a finished run (step %d); its results.json is "
                    "kept as it is. Set --config.eval.reevaluate=True to evaluate it again, "
                    "or raise config.total_steps / num_epochs to train on.", workdir,
                    int(state["step"]))
    writer.close()
    return saved
  results = {"steps": int(state["step"]), "train_seconds": outcome.train_seconds,
             **outcome.eval_metrics}
  if outcome.already_finished and saved is not None:  # re-evaluated: keep what it measured
    results = {**saved, **{k: v for k, v in results.items() if k != "train_seconds"}}
  if not outcome.finished:  # stopped early (preemption, stop_after): resume later
    writer.close()
    return {**results, "stopped_early": True}
  if is_main:
    plots.write_training_plots(workdir, spectrum[0] if spectrum else None)
    write_embedding_plot(config, workdir, evaluator)
  if after_training is not None:
    after_training(state)
  if config.eval.final:
    # (row, variables of the encoder probed, probe the raw pixels instead)
    rows = [("pretrained", lambda: variables_of(state), False)]
    if config.eval.compare_random_init:
      rows.append(("random_init", lambda: sharding.replicate(mesh, random_variables()),
                   False))
    if config.eval.get("compare_pixels", True):
      rows.append(("pixels", dict, True))
    final = {f"{row}/{k}": v for row, variables, pixels in rows
             for k, v in evaluator_lib.offline_probe(evaluator, variables(),
                                                     pixels=pixels).items()}
    writer.write_scalars(int(state["step"]), final)
    results.update(final)
    if is_main:
      print(format_results(final))
  writer.flush()
  loop.write_results(workdir, results)
  writer.close()
  return results


def write_embedding_plot(config, workdir: str, evaluator) -> None:
  """``embedding.png`` from the final evaluation's features (``config.eval.embedding_plot``:
  auto, umap, tsne, pca or none), after training, off the step's path."""
  import os
  from mssl import plots
  method = config.eval.get("embedding_plot", "auto")
  found = getattr(evaluator, "last_features", None)
  if method == "none" or found is None or len(found[1]) < 3:
    return
  name = plots.write_embedding(os.path.join(workdir, "embedding.png"), *found, method,
                               seed=config.seed)
  logging.info("embedding.png: %d eval-split points drawn with %s", len(found[1]), name)


def format_results(final: dict) -> str:
  rows = ["", "                      linear probe    kNN (k=20)"]
  for prefix, name in (("pretrained", "pretrained encoder"), ("random_init", "random init"),
                       ("pixels", "raw pixels")):
    if f"{prefix}/linear_probe" in final:
      rows.append(f"{name:>20}    {100 * final[f'{prefix}/linear_probe']:10.2f}%  "
                  f"{100 * final[f'{prefix}/knn']:10.2f}%")
  rows += [f"  note: {line}." for line in evaluate.unbeaten_baselines(final)]
  return "\n".join(rows)
