"""Input checks and small helpers shared by the objectives."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mssl import matrix

sg = jax.lax.stop_gradient


def as_float(x: jax.Array) -> jax.Array:
  """Objectives compute in at least float32, whatever the backbone's compute dtype."""
  return jnp.asarray(x).astype(jnp.promote_types(jnp.asarray(x).dtype, jnp.float32))


def check_views(arrays: Sequence, names: Sequence[str]) -> list[jax.Array]:
  """Each array a (B, D) batch with B >= 2, all of one shape; returns them as floats."""
  arrays = [as_float(a) for a in arrays]
  for a, name in zip(arrays, names):
    matrix.check_batch(a, name)
  first, first_name = arrays[0], names[0]
  for a, name in zip(arrays[1:], names[1:]):
    if a.shape != first.shape:
      raise ValueError(
          f"all views must have the same shape (B, D); got {first_name}.shape="
          f"{first.shape} and {name}.shape={a.shape}.")
  return arrays


def check_positive(value, name: str) -> None:
  if not value > 0:
    raise ValueError(f"{name} must be positive; got {value!r}.")


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  """Row-wise cosine similarity of two (B, D) batches."""
  return jnp.sum(matrix.row_normalize(a) * matrix.row_normalize(b), axis=-1)


def off_diagonal_sq_sum(c: jax.Array) -> jax.Array:
  """``sum_{i != j} c_ij^2``."""
  return jnp.sum(jnp.square(c)) - jnp.sum(jnp.square(jnp.diagonal(c)))
