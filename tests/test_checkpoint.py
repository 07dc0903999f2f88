"""mssl.checkpoint: the state's fingerprint, and what a checkpoint that cannot be read (or
belongs to another structure) does to a restore."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import checkpoint as ckpt_lib
from mssl import run

from fake_job import run_job, steps_on_disk
from helpers import load_config, small


def test_checkpoint_of_another_structure_is_an_error_not_a_fallback(tmp_path):
  directory = str(tmp_path / "checkpoints")
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(1, {"w": jnp.ones((4, 3))}, {"data_position": 1})
  checkpointer.close()
  checkpointer = ckpt_lib.Checkpointer(directory)
  with pytest.raises(ckpt_lib.CheckpointStructureError, match="nothing was moved"):
    checkpointer.restore_latest({"w": jax.ShapeDtypeStruct((5, 3), jnp.float32)})
  checkpointer.close()
  assert os.listdir(directory) == ["1"] and not (tmp_path / "checkpoints_unreadable").exists()


@pytest.mark.parametrize("target", [
    {"w": jnp.ones((4, 3)), "extra": jnp.ones((2,))},  # a field more than on disk
    {"w": jnp.ones((4, 3)), "opt": {"group": jnp.ones((3,))}},  # another subtree
])
def test_checkpoint_of_another_tree_is_an_error_not_a_fallback(tmp_path, target):
  """A checkpoint whose tree has other keys than the run's state (e.g. an optimiser with a
  parameter group more) is another run's, not a corrupt one: restoring it raises the
  structure error and moves nothing, so the run does not restart from step 0."""
  directory = str(tmp_path / "checkpoints")
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(1, {"w": jnp.ones((4, 3)), "opt": {"other": jnp.ones((3,))}},
                    {"data_position": 1})
  checkpointer.close()
  checkpointer = ckpt_lib.Checkpointer(directory)
  with pytest.raises(ckpt_lib.CheckpointStructureError, match="nothing was moved"):
    checkpointer.restore_latest(ckpt_lib.abstract_like(target))
  checkpointer.close()
  assert os.listdir(directory) == ["1"] and not (tmp_path / "checkpoints_unreadable").exists()


def test_fingerprint_detects_changed_bytes_and_falls_back(tmp_path, caplog):
  directory = str(tmp_path / "checkpoints")
  state = {"w": jnp.arange(20_000, dtype=jnp.float32).reshape(200, 100),
           "step": jnp.int32(7)}
  checkpointer = ckpt_lib.Checkpointer(directory)
  checkpointer.save(1, state, {"data_position": 1})
  checkpointer.save(2, state, {"data_position": 2})
  checkpointer.close()
  files = [os.path.join(root, name) for root, _, names in
           os.walk(os.path.join(directory, "2", "state")) for name in names]
  largest = max(files, key=os.path.getsize)  # the array data
  size = os.path.getsize(largest)
  with open(largest, "r+b") as f:
    f.seek(size // 2)
    original = f.read(64)
    f.seek(size // 2)
    f.write(bytes((b + 1) % 256 for b in original))
  checkpointer = ckpt_lib.Checkpointer(directory)
  step, restored, _ = checkpointer.restore_latest(ckpt_lib.abstract_like(state))
  checkpointer.close()
  assert step == 1
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
  warnings = [r.getMessage() for r in caplog.records if "step 2" in r.getMessage()]
  assert len(warnings) == 1 and "could not be read" in warnings[0]
  assert os.listdir(directory) == ["1"]


def test_fingerprint_is_exact_and_sensitive():
  tree = {"a": jnp.arange(10, dtype=jnp.float32), "b": jnp.ones((3,), jnp.bfloat16),
          "k": jax.random.key_data(jax.random.key(0)), "s": jnp.int32(3)}
  value = ckpt_lib.fingerprint(tree)
  assert value == ckpt_lib.fingerprint(jax.tree_util.tree_map(np.asarray, tree))
  changed = dict(tree, a=tree["a"].at[3].set(np.nextafter(np.float32(3), np.float32(4))))
  assert ckpt_lib.fingerprint(changed) != value
  swapped = dict(tree, a=tree["a"][::-1])  # same values, other positions
  assert ckpt_lib.fingerprint(swapped) != value


def test_leftover_temporary_directories_are_removed_on_start(tmp_path):
  run_job(tmp_path, total_steps=2)
  leftover = tmp_path / "checkpoints" / f"3{ckpt_lib.TMP_SUFFIX}-123"
  (leftover / "state").mkdir(parents=True)
  assert run_job(tmp_path, total_steps=4).finished
  assert not leftover.exists() and steps_on_disk(tmp_path) == [1, 2, 3, 4]


@pytest.mark.slow(seconds=13)
def test_truncated_latest_checkpoint_is_skipped(tfds_dir, tmp_path, caplog):
  config = small(load_config("simclr_r18_cifar", "runlocal"), tfds_dir, total_steps=4,
                 checkpoint_every=2, eval_every=4, **{"model.name": "vit_micro",
                                                      "model.patch_size": 4})
  run.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / "checkpoints" / "4" / "state"
  for path in latest.rglob("*"):
    if path.is_file() and path.stat().st_size > 0:
      with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
  # The trainer falls back to step 2 and trains on to 4 again.
  config.total_steps = 4
  results = run.train_and_evaluate(config, str(tmp_path))
  assert results["steps"] == 4
  assert any("could not be read" in r.getMessage() and "step 4" in r.getMessage()
             for r in caplog.records)
  assert len(list((tmp_path / "checkpoints_unreadable").iterdir())) == 1
  assert ckpt_lib.Checkpointer(str(tmp_path / "checkpoints")).all_steps() == [2, 4]
