"""Offline evaluation of a pretrained encoder: a linear probe and kNN on frozen features.

Run by the same entry point as pretraining, with ``configs/linear_eval.py``::

    python -m mssl.main --config=configs/linear_eval.py --workdir=EVAL_DIR \\
        --config.pretrained_workdir=PRETRAIN_DIR

The encoder comes from the pretraining workdir's newest readable checkpoint; features of
the eval split and of ``data.knn_split`` (the probe's training set) are taken in
evaluation mode (centre crop, running BN statistics), then a linear classifier is trained
on them with its own cosine schedule and the kNN classifier votes. Dataset fields left
``None`` in this config fall back to the pretraining run's.
"""

from __future__ import annotations

import os

from mssl import data, export, loop, sharding
from mssl.eval import evaluator as evaluator_lib
from mssl.steps.common import embed_outputs


def train_and_evaluate(config, workdir: str) -> dict:
  """Probes the pretrained encoder of ``config.pretrained_workdir`` (nothing is trained but
  the linear probe); the trainers' common entry point, see the module docstring."""
  os.makedirs(workdir, exist_ok=True)
  pre_config, network, variables, step = export.load_variables(config.pretrained_workdir)
  _, data_config = export.downstream_data(config)
  eval_config = pre_config.copy_and_resolve_references()
  eval_config.data = data_config
  # The probe's classes are the evaluation data's (another dataset than the pretraining
  # run's may have more), where they can be read; else the pretraining run's.
  num_classes = data.dataset_num_classes(
      data_config.dataset, data_dir=data_config.data_dir,
      train_split=data_config.train_split) or \
      export.load_run_info(config.pretrained_workdir)["num_classes"]
  for key, value in config.eval.items():
    if value is not None:
      eval_config.eval[key] = value
  mesh = sharding.make_mesh()
  evaluator = evaluator_lib.Evaluator(eval_config, mesh, num_classes,
                                      apply=embed_outputs(network))
  results = evaluator.probe(sharding.replicate(mesh, variables))
  results = {"checkpoint_step": int(step), **{k: float(v) for k, v in results.items()}}
  loop.write_results(workdir, results)  # process 0 writes, as every trainer's results
  print(f"linear probe {100 * results['linear_probe']:.2f}%  "
        f"kNN {100 * results['knn']:.2f}%  (checkpoint step {step})")
  return results
