"""Offline linear probe and kNN of a pretrained encoder (frozen features).

    python -m mssl.main --config=configs/linear_eval.py --workdir=/tmp/eval \\
        --config.pretrained_workdir=/tmp/quickstart

Dataset fields left None fall back to the pretraining run's (same dataset, eval split
and kNN/probe training split); set e.g. --config.data.knn_split=train to probe on the
whole training split.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  common.parse_arg(arg)  # takes no arguments
  c = common.downstream_config("linear_eval")
  for key in list(c.data.keys()):
    if key in ("dataset", "eval_split", "knn_split", "image_size", "eval_crop_fraction"):
      c.data[key] = ml_collections.FieldReference(None, field_type=type(c.data[key]))
  c.data.data_dir = None
  c.eval.probe_epochs = 50
  # None: the pretraining run's protocol (MAE runs: BatchNorm head + LARS).
  for key in ("probe_normalization", "probe_optimizer"):
    c.eval[key] = ml_collections.FieldReference(None, field_type=str)
  c.eval.probe_warmup_epochs = ml_collections.FieldReference(None, field_type=float)
  return c
