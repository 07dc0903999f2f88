"""One training step on a fixed global batch, in one of several processes (a test helper).

    python tests/multiprocess_step.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

With NUM_PROCESSES > 1 it joins ``jax.distributed`` on 127.0.0.1:PORT (gloo collectives on
CPU); each process feeds its rows of the same global batch through
``jax.make_array_from_process_local_data``. The updated parameters are saved to OUT.npz,
so runs with 1 and 2 processes can be compared.
"""

import sys

import jax


def main(process_id: int, num_processes: int, port: int, out: str):
  if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id)
  import numpy as np
  from configs import matrix_ssl_r18_cifar
  from mssl import sharding
  from mssl.steps import two_view

  config = matrix_ssl_r18_cifar.get_config("runlocal")
  config.data.image_size = 16
  network = two_view.build_network(config, 10)
  tx, schedule = two_view.make_optimizer(config, 10, 10)
  state = two_view.create_state(two_view.init_variables(network, 16, 0), tx, 0, ema_teacher=True)
  step_fn = two_view.make_train_step(config, network, tx, schedule, 10, 10)
  rng = np.random.default_rng(0)
  views = tuple(rng.uniform(size=(32, 16, 16, 3)).astype(np.float32) for _ in range(2))
  labels = rng.integers(0, 10, 32)
  rows = slice(process_id * 32 // num_processes, (process_id + 1) * 32 // num_processes)
  local = {"views": tuple(v[rows] for v in views), "label": labels[rows]}
  initial = {"params": state.params, "batch_stats": state.batch_stats}
  mesh = sharding.make_mesh()
  step = jax.jit(step_fn, in_shardings=(sharding.replicated(mesh),
                                        sharding.batch_sharded(mesh)),
                 out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)))
  # Two steps: the first from the same parameters everywhere, the second from parameters
  # that already carry the first update's rounding (the test bounds them differently).
  state, first = step(sharding.replicate(mesh, state), sharding.global_batch(mesh, local))
  state, second = step(state, sharding.global_batch(mesh, local))
  local = lambda x: np.asarray(jax.device_get(x.addressable_shards[0].data))
  flat = jax.tree_util.tree_flatten_with_path(
      {"params": state.params, "batch_stats": state.batch_stats,
       "metrics": {"step1": first, "step2": second}})[0]
  arrays = {jax.tree_util.keystr(path): local(leaf) for path, leaf in flat}
  for path, leaf in jax.tree_util.tree_flatten_with_path(initial)[0]:
    arrays["initial" + jax.tree_util.keystr(path)] = np.asarray(leaf)
  np.savez(out, **arrays)
  loss = float(jax.device_get(second["loss"].addressable_shards[0].data))
  print(f"process {process_id}/{num_processes}: {jax.device_count()} devices, loss {loss:.6f}")


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
