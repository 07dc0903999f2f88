"""Optimisers and schedules of the SSL recipes, built from optax's own pieces.

* learning rate: ``base_lr x global_batch / 256`` (the linear scaling rule every recipe
  in the method sheet uses), linear warm-up then cosine decay to zero;
* ``lars`` (optax.lars) with biases and normalisation parameters excluded from both
  weight decay and the trust ratio (BYOL / SimCLR practice);
* ``sgd``: SGD with momentum and L2 weight decay added to the gradient (PyTorch's
  ``SGD(weight_decay=...)``, the Matrix-SSL / MEC recipe), biases and norms excluded;
* ``adamw``: decoupled weight decay, biases and norms excluded (MAE recipe);
* :func:`ema_momentum`: the teacher's momentum, cosine from ``base`` to 1 over training.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("lars", "sgd", "adamw")


def decay_mask(params):
  """True for parameters that get weight decay / LARS adaptation: kernels (ndim > 1).

  Biases, BatchNorm/LayerNorm scales and offsets (all 1-D) are excluded.
  """
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(*, base_lr: float, global_batch: int, total_steps: int,
                           warmup_steps: int, scale_by_batch: bool = True,
                           end_lr: float = 0.0) -> optax.Schedule:
  """Linear warm-up to ``base_lr x B / 256`` (or ``base_lr``), then cosine to ``end_lr``."""
  peak = base_lr * global_batch / 256 if scale_by_batch else base_lr
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=end_lr)


def make_optimizer(name: str, learning_rate, *, weight_decay: float = 0.0,
                   momentum: float = 0.9, trust_coefficient: float = 0.001,
                   b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
  """An optimiser by config name (see the module docstring)."""
  if name == "lars":
    return optax.lars(learning_rate, weight_decay=weight_decay,
                      weight_decay_mask=decay_mask, trust_coefficient=trust_coefficient,
                      trust_ratio_mask=decay_mask, momentum=momentum)
  if name == "sgd":
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                       optax.sgd(learning_rate, momentum=momentum))
  if name == "adamw":
    return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                       mask=decay_mask)
  raise ValueError(f"config.optimizer.name must be one of {OPTIMIZERS}; got {name!r}.")


def ema_momentum(step, *, base: float, total_steps: int):
  """``1 - (1 - base) (cos(pi step / T) + 1) / 2``: ``base`` at step 0, 1 at the end."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(math.pi * progress) + 1.0) / 2.0


def ema_update(teacher, student, momentum):
  """``teacher <- momentum * teacher + (1 - momentum) * student`` leaf by leaf."""
  return jax.tree_util.tree_map(lambda t, s: momentum * t + (1.0 - momentum) * s,
                                teacher, student)
