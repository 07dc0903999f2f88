"""mssl.sharding: the mesh, global batches (each device its rows), replicated state, the
donating jitted step; a step on the batch sharded over 8 devices, or over two processes,
is the step of one device."""

import os
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import sharding
from mssl.steps import two_view

from helpers import (BATCH_STATS, FAST_COMPILE, LATER_METRICS, ROOT, STEP_METRICS,
                     assert_same_updates, flat, load_config, small)


def test_the_mesh_is_one_data_axis_over_the_devices_given():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.devices.shape == (jax.device_count(),)
  assert mesh.devices.tolist() == jax.devices()
  two = sharding.make_mesh(np.array(jax.devices()[:2]).reshape(1, 2))  # flattened
  assert two.devices.tolist() == jax.devices()[:2]


def test_a_global_batch_gives_each_device_its_rows_and_comes_back_whole(data_mesh):
  mesh = sharding.make_mesh()
  n = jax.device_count()
  local = {"x": np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3),
           "label": np.arange(2 * n)}
  batch = sharding.global_batch(mesh, local)
  chex.assert_trees_all_equal_shapes(batch, local)
  assert batch["x"].sharding == sharding.batch_sharded(mesh)
  shards = sorted(batch["x"].addressable_shards, key=lambda s: s.index[0].start)
  assert [s.device for s in shards] == jax.devices()
  for i, shard in enumerate(shards):  # device i holds rows 2i and 2i + 1
    np.testing.assert_array_equal(np.asarray(shard.data), local["x"][2 * i:2 * i + 2])
  chex.assert_trees_all_equal(sharding.to_host(batch), local)
  state = sharding.replicate(mesh, {"w": np.arange(6.0).reshape(2, 3)})
  assert state["w"].sharding.is_fully_replicated
  assert len(state["w"].addressable_shards) == n
  for shard in state["w"].addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), np.arange(6.0).reshape(2, 3))


def test_the_jitted_step_sums_over_the_global_batch_and_donates_the_state(data_mesh):
  mesh = sharding.make_mesh()

  def train_step(state, batch):
    return {"w": state["w"] + batch.sum(0)}, {"loss": jnp.mean(batch)}
  step = sharding.jit_train_step(train_step, mesh)
  rows = np.arange(4 * jax.device_count() * 3, dtype=np.float32).reshape(-1, 3)
  state = sharding.replicate(mesh, {"w": jnp.zeros(3)})
  new_state, metrics = step(state, sharding.global_batch(mesh, rows))
  chex.assert_trees_all_close(np.asarray(new_state["w"]), rows.sum(0))
  assert float(metrics["loss"]) == pytest.approx(rows.mean())
  assert new_state["w"].sharding.is_fully_replicated
  assert metrics["loss"].sharding.is_fully_replicated
  assert state["w"].is_deleted()  # donated: its buffer became the new state's


def test_sharded_step_equals_unsharded(tfds_dir, data_mesh):
  """One two-view step on 1 and on 8 devices. The micro ViT compiles in a fraction of the
  ResNet's time; matrix_ssl's projector and predictor have BatchNorm, so the batch
  statistics still have to be global (the ResNet's BN: tests/models/test_resnet.py)."""
  config = small(load_config("matrix_ssl_r18_cifar", "runlocal"), tfds_dir,
                 **{"model.name": "vit_micro", "model.patch_size": 4,
                    # float views in, no augmentation in the step (its sharding:
                    # tests/data/test_device_augment.py)
                    "data.device_augment": False})
  network = two_view.build_network(config, 10)
  tx, schedule = two_view.make_optimizer(config, 10, 10)
  state = two_view.create_state(two_view.init_variables(network, 16, 0), tx, 0, ema_teacher=True)
  step_fn = two_view.make_train_step(config, network, tx, schedule, 10, 10)
  rng = np.random.default_rng(0)
  batch = {"views": tuple(rng.uniform(size=(32, 16, 16, 3)).astype(np.float32)
                          for _ in range(2)),
           "label": rng.integers(0, 10, 32)}
  single = sharding.make_mesh(jax.devices()[:1])
  outs = []
  for mesh in (single, data_mesh):
    step = jax.jit(step_fn, in_shardings=(sharding.replicated(mesh),
                                          sharding.batch_sharded(mesh)),
                   out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)))
    new_state, metrics = step(sharding.replicate(mesh, state),
                              sharding.global_batch(mesh, batch))
    outs.append(jax.device_get((new_state.params, new_state.batch_stats, metrics)))
  (params8, stats8, metrics8), (params1, stats1, metrics1) = outs[1], outs[0]
  assert stats1, "the network has BatchNorm statistics to compare"
  assert_same_updates(flat(params8), flat(params1), flat(state.params))
  for key, want in flat(stats1).items():
    np.testing.assert_allclose(flat(stats8)[key], want, err_msg=key, **BATCH_STATS)
  for key, want in metrics1.items():
    np.testing.assert_allclose(metrics8[key], want, err_msg=key, **STEP_METRICS)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow(seconds=30)
def test_two_processes_train_together_like_one(tmp_path):
  """Two jax.distributed processes (gloo) and one process, same global batch: same step."""
  script = ROOT / "tests" / "multiprocess_step.py"
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=str(ROOT),
             XLA_FLAGS="--xla_force_host_platform_device_count=2 " + FAST_COMPILE)
  procs = [subprocess.Popen([sys.executable, str(script), str(i), "2", str(port),
                             str(tmp_path / f"proc{i}.npz")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(l[-2000:] for l in logs)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 " + FAST_COMPILE
  single = subprocess.run([sys.executable, str(script), "0", "1", "0",
                           str(tmp_path / "single.npz")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
  multi = dict(np.load(tmp_path / "proc0.npz"))
  ref = dict(np.load(tmp_path / "single.npz"))
  assert multi.keys() == ref.keys()
  # The bounds and why (helpers.STEP_METRICS, ...): the first step's metrics come from the
  # same parameters, the second step's and the updates carry the first update's rounding.
  for key in [k for k in ref if k.startswith("['metrics']")]:
    bound = STEP_METRICS if key.startswith("['metrics']['step1']") else LATER_METRICS
    np.testing.assert_allclose(multi[key], ref[key], err_msg=key, **bound)
  params = [k for k in ref if k.startswith("['params']")]
  assert_same_updates({k: multi[k] for k in params}, {k: ref[k] for k in params},
                      {k: ref["initial" + k] for k in params})
  for key in [k for k in ref if k.startswith("['batch_stats']")]:
    np.testing.assert_allclose(multi[key], ref[key], err_msg=key, **BATCH_STATS)
  other = np.load(tmp_path / "proc1.npz")
  for key in ref:  # both processes hold the same replicated state
    np.testing.assert_array_equal(other[key], multi[key])
