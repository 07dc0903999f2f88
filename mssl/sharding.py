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
