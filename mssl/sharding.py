"""Mesh, shardings and global batches.

One mesh axis, ``data``, over every device of every process (room for a ``model`` axis
later). The train state is replicated; batches are sharded along their leading axis, so
objectives see the *global* batch and XLA inserts the cross-device reductions.
Each process feeds its own rows with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

P = jax.sharding.PartitionSpec
DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, P())


def batch_sharded(mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, P(DATA_AXIS))


def global_batch(mesh, local_batch: Any) -> Any:
  """Process-local numpy batch (leading axis = this process's rows) -> global arrays."""
  sharding = batch_sharded(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def replicate(mesh, tree: Any) -> Any:
  """Places a host pytree on every device of the mesh (same value everywhere)."""
  sharding = replicated(mesh)
  return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def to_host(tree: Any) -> Any:
  """Fetches (possibly multi-host) global arrays to numpy on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)


def jit_train_step(train_step, mesh):
  """``train_step(state, batch) -> (state, metrics)`` jitted for a training loop: the
  state replicated and donated (its buffers are reused for the new state), the batch
  sharded along the ``data`` axis, state and metrics replicated on the way out. Free of
  the loop's services (clu, tf.data), so benchmarks build the loop's exact step."""
  return jax.jit(train_step, in_shardings=(replicated(mesh), batch_sharded(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=(0,))
