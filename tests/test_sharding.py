"""mssl.sharding: a step on the batch sharded over 8 devices, or over two processes, is the
step of one device."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mssl import sharding
from mssl.steps import two_view

from helpers import ROOT, assert_trees_close, load_config, small


def test_sharded_step_equals_unsharded(tfds_dir, data_mesh):
  config = small(load_config("matrix_ssl_r18_cifar", "runlocal"), tfds_dir)
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
    outs.append(jax.device_get((new_state["params"], new_state["batch_stats"], metrics)))
  assert_trees_close(outs[1], outs[0], rtol=2e-4, atol=2e-5)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_like_one(tmp_path):
  """Two jax.distributed processes (gloo) and one process, same global batch: same step."""
  script = ROOT / "tests" / "multiprocess_step.py"
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=str(ROOT),
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [subprocess.Popen([sys.executable, str(script), str(i), "2", str(port),
                             str(tmp_path / f"proc{i}.npz")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(l[-2000:] for l in logs)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  single = subprocess.run([sys.executable, str(script), "0", "1", "0",
                           str(tmp_path / "single.npz")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
  multi = np.load(tmp_path / "proc0.npz")
  ref = np.load(tmp_path / "single.npz")
  assert multi.files == ref.files
  # Gloo sums in another order than one process does; float32 rounding is amplified by
  # gradients that cancel (BN biases), so each tensor's *update* over the two steps is
  # compared relative to its size. A real difference (local instead of global batch
  # statistics, wrong rows) changes updates by O(1).
  for key in ref.files:
    if key.startswith("initial") or "batch_stats" in key:
      continue
    if key.startswith("['metrics']"):
      np.testing.assert_allclose(multi[key], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)
      continue
    start = ref["initial" + key]
    want, got = ref[key] - start, multi[key] - start
    assert np.linalg.norm(got - want) <= 1e-2 * np.linalg.norm(want) + 1e-7, key
  for key in [k for k in ref.files if k.startswith("['batch_stats']")]:
    np.testing.assert_allclose(multi[key], ref[key], rtol=1e-3, atol=1e-6, err_msg=key)
  other = np.load(tmp_path / "proc1.npz")
  for key in ref.files:  # both processes hold the same replicated state
    np.testing.assert_array_equal(other[key], multi[key])
