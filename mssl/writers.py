"""Metric writers: a JSON-lines file beside clu's TensorBoard/logging writers."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from clu import metric_writers


def _plain(value):
  try:
    value = float(value)
  except (TypeError, ValueError):
    return str(value)
  return value if math.isfinite(value) else str(value)


class JsonlWriter(metric_writers.MetricWriter):
  """Appends ``{"step": s, name: value, ...}`` lines to ``path`` (scalars only)."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    self._file = open(path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def create_writer(workdir: str, *, is_main: bool) -> metric_writers.MetricWriter:
  """TensorBoard events + logging (+ ``metrics.jsonl``) on process 0; logging elsewhere."""
  default = metric_writers.create_default_writer(workdir, just_logging=not is_main,
                                                 asynchronous=False)
  if not is_main:
    return default
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir,
                                                                       "metrics.jsonl"))])


def read_jsonl(path: str) -> list[dict]:
  """The records of a metrics.jsonl file (a resumed run may repeat steps: last wins)."""
  if not os.path.exists(path):
    return []
  by_step: dict[tuple, dict] = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if line:
        record = json.loads(line)
        key = (record["step"], tuple(sorted(k for k in record if k != "step")))
        by_step[key] = record
  return sorted(by_step.values(), key=lambda r: r["step"])
