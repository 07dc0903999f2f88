"""Images that fail to decode: reported by name, then left out or kept as a placeholder.

The one reporter for every reading path: an image folder's files read while loading
(:mod:`mssl.data.image_folder`), an encoded split decoded whole for evaluation or the float
views, and an encoded split's crops decoded by the training views
(:mod:`mssl.data.pipeline`). A load-time header check (image folders) catches truncated
and foreign files before training; what it cannot see (damage inside a file, a file
changed or removed after the check, a bad tfds record) fails here, and the run goes on
without the image, with a :class:`~mssl.data.split.DataWarning` naming it, or, under
``strict``, stops with an error naming it.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from mssl.data.split import DataWarning


def map_reporting_failures(examples: tf.data.Dataset, fn: Callable, *, source: str,
                           strict: bool, first_index: int = 0,
                           placeholder: Optional[Callable] = None) -> tf.data.Dataset:
  """``fn(example)`` of the ``(index, example)`` pairs of ``examples`` (indices
  consecutive from ``first_index``; each example has a ``"name"`` for messages), in order
  and in parallel, surviving ``fn`` failing on an example.

  A failed example is reported by its name (a :class:`DataWarning` naming ``source``, or
  with ``strict`` an error that stops the run) and then:

  * without ``placeholder``: left out. ``examples`` must then be finite: a failure is
    seen when the next example arrives, or at the end of the stream;
  * with ``placeholder``: replaced by ``placeholder()``, which keeps every later example
    at its position in the stream (a resumed training stream stays exact). The stream
    may be infinite.

  How: each example's name goes into a hash table keyed by its index before ``fn`` runs;
  failed examples are dropped (``ignore_errors``); a sequential scan sees the gaps in the
  indices, reports the names found under them, and removes every index it has passed
  (the table holds the examples in flight only). The common case (no failure) costs a
  table insert and remove per example, and with a placeholder one copy of the output
  (benchmarks/input_pipeline.py measures the training path with it).
  """
  keep_slot = placeholder is not None
  names = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, default_value="")

  def attempt(index, example):
    with tf.control_dependencies([names.insert(index[None], example["name"][None])]):
      example = {key: tf.identity(value) for key, value in example.items()}
    return index, fn(example)

  def report(failed):
    failed = [n.decode(errors="replace") for n in np.atleast_1d(failed)]
    if strict:
      raise ValueError(f"{source}: {len(failed)} image(s) failed to decode while "
                       f"reading (strict=True): {'; '.join(failed)}")
    warnings.warn(f"{source}: {'replaced' if keep_slot else 'skipped'} "
                  f"{len(failed)} image(s) that failed to decode while reading"
                  f"{' (by a grey placeholder with label -1)' if keep_slot else ''}: "
                  f"{'; '.join(failed)}", DataWarning, stacklevel=2)
    return np.int64(0)

  def report_if(condition, failed_names):
    return tf.cond(condition,
                   lambda: tf.numpy_function(report, [failed_names], tf.int64, stateful=True),
                   lambda: tf.constant(0, tf.int64))

  def gaps(expected, element):
    index, out = element
    at_end = index < 0  # (finite streams only) whatever is left in the table failed
    if keep_slot:
      noted_end = tf.constant(0, tf.int64)
    else:
      left_keys, left_names = names.export()
      left = tf.gather(left_names, tf.argsort(left_keys))
      noted_end = report_if(at_end & (tf.size(left) > 0), left)
      index = tf.where(at_end, expected, index)
    missing = index - expected
    noted = report_if(missing > 0, names.lookup(tf.range(expected, index)))
    with tf.control_dependencies([names.remove(tf.range(expected, index + 1))]):
      following = index + 1 + 0 * (noted + noted_end)  # (ties the reports to the output)
    if not keep_slot:
      return following, (at_end, out)
    stacked = tf.cond(
        missing > 0,
        lambda: tf.nest.map_structure(
            lambda p, o: tf.concat([tf.repeat(p[None], missing, 0), o[None]], 0),
            placeholder(), out),
        lambda: tf.nest.map_structure(lambda o: o[None], out))
    return following, stacked

  ds = examples.map(attempt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.ignore_errors()
  if keep_slot:
    return ds.scan(tf.constant(first_index, tf.int64), gaps).unbatch()
  end = tf.nest.map_structure(  # an element of fn's structure marking the end
      lambda spec: tf.zeros([0 if d is None else d for d in spec.shape], spec.dtype),
      ds.element_spec[1])
  ds = ds.concatenate(tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), end)))
  ds = ds.scan(tf.constant(first_index, tf.int64), gaps)
  return ds.filter(lambda at_end, _: tf.logical_not(at_end)).map(lambda _, out: out)
