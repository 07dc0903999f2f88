"""Metric writers: a JSON-lines file beside clu's TensorBoard/logging writers."""

from __future__ import annotations

import json
import logging
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


def _drop_cut_short_line(path: str) -> None:
  """Truncates a last line without its newline (a killed run stopped writing it), so the
  records a resumed run appends start on a line of their own."""
  if not os.path.exists(path) or not os.path.getsize(path):
    return
  with open(path, "rb+") as f:
    data = f.read()
    if data.endswith(b"\n"):
      return
    keep = data.rfind(b"\n") + 1
    logging.warning("%s: dropped its last line, cut short: %.80r", path, data[keep:])
    f.truncate(keep)


class JsonlWriter(metric_writers.MetricWriter):
  """Appends ``{"step": s, name: value, ...}`` lines to ``path`` (scalars only)."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    _drop_cut_short_line(path)
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
  """The records of a metrics.jsonl file (a resumed run may repeat steps: last wins).

  A last line cut short (a kill can stop a write anywhere) is dropped with a warning, so
  a crash mid-write never blocks the next run; any other line that is not a record is a
  ValueError naming the file and the line."""
  if not os.path.exists(path):
    return []
  by_step: dict[tuple, dict] = {}
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
  for number, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      key = (record["step"], tuple(sorted(k for k in record if k != "step")))
    except (ValueError, TypeError, KeyError) as error:
      if number == last:
        logging.warning("%s: dropped its last line %d, cut short (%s): %.80r", path,
                        number + 1, error, line)
        continue
      raise ValueError(f"{path}, line {number + 1}, is not a metrics record ({error}): "
                       f"{line[:80]!r}. Remove that line (the file is append-only "
                       "JSON lines, one record a line).") from None
    by_step[key] = record
  return sorted(by_step.values(), key=lambda r: r["step"])
