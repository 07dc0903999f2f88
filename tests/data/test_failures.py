"""mssl.data.failures: an image that fails only when decoded is reported by name, then left
out or kept as a placeholder, in every reading path; and the reporter on its own."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mssl import data

from data.folders import first_batches, train_stream, write_classes


def test_an_image_that_fails_only_when_decoded_is_skipped_by_name(tmp_path):
  """Damage inside a PNG (its header and end intact) passes the load-time check; the
  pipeline then skips the file with a warning naming it instead of stopping."""
  write_classes(tmp_path, "train", {"a": 4, "b": 4}, size=32)
  damaged = tmp_path / "train" / "b" / "002.png"
  raw = bytearray(damaged.read_bytes())
  raw[60:-20] = bytes(len(raw) - 80)
  damaged.write_bytes(bytes(raw))
  split = data.load_split(f"image_folder:{tmp_path}", "train")
  assert split.num_examples == 8  # not caught at load
  with pytest.warns(data.DataWarning, match=r"skipped 1 image\(s\) that failed to decode "
                                            r"while reading: .*002\.png"):
    examples = list(tfds.as_numpy(split.dataset))
  assert sorted(int(e["label"]) for e in examples) == [0, 0, 0, 0, 1, 1, 1]
  strict = data.load_split(f"image_folder:{tmp_path}", "train", strict=True)
  with pytest.raises(tf.errors.OpError, match=r"failed to decode while reading "
                                              r"\(strict=True\): .*002\.png"):
    list(tfds.as_numpy(strict.dataset))



def test_encoded_image_failing_in_training_keeps_its_slot_and_is_named(tmp_path):
  """An encoded image damaged inside (header and end marker intact: the load-time check
  passes it) fails only when a view decodes it: its slot becomes a grey placeholder with
  label -1, a DataWarning names the file, and the stream goes on (strict: stops)."""
  write_classes(tmp_path, "train", {"a": 4, "b": 4}, size=32)
  damaged = tmp_path / "train" / "b" / "002.png"
  raw = bytearray(damaged.read_bytes())
  raw[60:-20] = bytes(len(raw) - 80)
  damaged.write_bytes(bytes(raw))
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  assert split.num_examples == 8
  with pytest.warns(data.DataWarning, match=r"replaced 1 image\(s\) that failed to decode "
                                            r"while reading.*002\.png"):
    (batch,) = first_batches(train_stream(split, "none", batch_size=8, image_size=8, cache="never",
                             device_augment=True))
  assert sorted(batch["label"].tolist()) == [-1, 0, 0, 0, 0, 1, 1, 1]
  grey = batch["views"][0][batch["label"] == -1]
  assert grey.shape == (1, 8, 8, 3) and np.all(grey == 128)
  # The placeholder keeps the slot: a stream resumed past the failure is exact.
  make = lambda start: train_stream(split, "none", batch_size=3, image_size=8, cache="never",
                              start_batch=start, device_augment=True)
  with pytest.warns(data.DataWarning, match=r"002\.png"):
    stream = data.InputIterator(make)
    want = [next(stream) for _ in range(6)]
    resumed = data.InputIterator(make, position=4)
    got = [next(resumed) for _ in range(2)]
  assert sum((b["label"] == -1).sum() for b in want) >= 2  # 18 slots: over two epochs of 8
  for w, g in zip(want[4:], got):
    np.testing.assert_array_equal(w["label"], g["label"])
    np.testing.assert_array_equal(w["views"][0], g["views"][0])
  with pytest.warns(data.DataWarning, match=r"skipped 1 image\(s\).*002\.png"):
    evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=8, image_size=8)))
  assert float(evals[0]["mask"].sum()) == 7
  # A failure at the very end of a finite pass is reported too (by the end marker).
  order = [e["name"].decode() for e in tfds.as_numpy(split.dataset)]
  last = pathlib.Path(order[-1])
  last.write_bytes(bytes(raw))  # the damaged file's bytes: header and end marker intact
  split = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True)
  with pytest.warns(data.DataWarning) as caught:
    evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=8, image_size=8)))
  assert float(evals[0]["mask"].sum()) == 6
  messages = sorted(str(w.message) for w in caught)
  assert len(messages) == 2 and all("skipped 1 image(s)" in m for m in messages)
  assert {pathlib.Path(m.split(": ")[-1]).name for m in messages} == {"002.png", last.name}
  strict = data.load_split(f"image_folder:{tmp_path}", "train", encoded=True, strict=True)
  with pytest.raises(tf.errors.OpError, match=r"failed to decode while reading "
                                              r"\(strict=True\): .*002\.png"):
    first_batches(train_stream(strict, "none", batch_size=8, image_size=8, cache="never",
                  device_augment=True))



# ------------------------------------------------------------ the reporter itself ------
def _examples(count):
  """``(index, {"name", "value"})`` pairs; ``fn`` below fails on the values 3 and 7."""
  return tf.data.Dataset.range(count).map(
      lambda i: (i, {"name": tf.strings.as_string(i), "value": i}))


def _fail_on_3_and_7(example):
  value = example["value"]
  ok = tf.debugging.assert_none_equal(value % 4, tf.constant(3, tf.int64))
  with tf.control_dependencies([ok]):
    return {"value": value * 10}


def test_failed_examples_are_left_out_and_named_in_order():
  got = data.failures.map_reporting_failures(_examples(10), _fail_on_3_and_7, source="S",
                                             strict=False)
  with pytest.warns(data.DataWarning) as caught:
    values = [int(e["value"]) for e in tfds.as_numpy(got)]
  assert values == [0, 10, 20, 40, 50, 60, 80, 90]
  assert [str(w.message) for w in caught] == [
      "S: skipped 1 image(s) that failed to decode while reading: 3",
      "S: skipped 1 image(s) that failed to decode while reading: 7"]
  # Failures at the very end are found by the end marker, all in one message.
  got = data.failures.map_reporting_failures(_examples(8).skip(5), _fail_on_3_and_7,
                                             source="S", strict=False, first_index=5)
  with pytest.warns(data.DataWarning, match=r"^S: skipped 1 image\(s\).*: 7$"):
    assert [int(e["value"]) for e in tfds.as_numpy(got)] == [50, 60]
  strict = data.failures.map_reporting_failures(_examples(10), _fail_on_3_and_7,
                                                source="S", strict=True)
  with pytest.raises(tf.errors.OpError, match=r"S: 1 image\(s\) failed to decode while "
                                              r"reading \(strict=True\): 3"):
    list(tfds.as_numpy(strict))


def test_a_placeholder_keeps_the_failed_slot_of_an_infinite_stream():
  stream = _examples(8).repeat()  # indices 0..7, then 0..7 again: consecutive enumeration
  got = data.failures.map_reporting_failures(
      stream.map(lambda i, ex: ex).enumerate(), _fail_on_3_and_7, source="S", strict=False,
      placeholder=lambda: {"value": tf.constant(-1, tf.int64)})
  with pytest.warns(data.DataWarning) as caught:
    values = [int(e["value"]) for e in tfds.as_numpy(got.take(12))]
  assert values == [0, 10, 20, -1, 40, 50, 60, -1, 0, 10, 20, -1]
  messages = [str(w.message) for w in caught]
  assert messages[:2] == [f"S: replaced 1 image(s) that failed to decode while reading (by "
                          f"a grey placeholder with label -1): {i}" for i in (3, 7)], messages
