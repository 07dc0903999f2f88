"""Optimisers and schedules of the SSL recipes, built from optax's own pieces.

* learning rate: ``base_lr x global_batch / 256`` (the linear scaling rule every recipe
  in ``docs/methods.md`` uses), linear warm-up then cosine decay to zero;
* ``lars`` (optax.lars) with biases and normalisation parameters excluded from both
  weight decay and the trust ratio (BYOL / SimCLR practice); with ``clip_lr`` the
  solo-learn variant its CIFAR recipes use (:func:`scale_by_clipped_lars`): each kernel
  learns at ``min(eta ||w|| / (||g|| + wd ||w||), lr)``, so the trust ratio only ever
  lowers the schedule's rate;
* ``sgd``: SGD with momentum and L2 weight decay added to the gradient (PyTorch's
  ``SGD(weight_decay=...)``, the Matrix-SSL / MEC recipe), biases and norms excluded;
* ``adamw``: decoupled weight decay, biases and norms excluded (MAE recipe);
* :func:`ema_momentum`: the teacher's momentum, cosine from ``base`` to 1 over training;
* :func:`layer_decay_multipliers` / :func:`scale_by_multipliers`: layer-wise learning-rate
  decay for ViT fine-tuning (BEiT / MAE): a parameter in layer ``i`` of ``L + 1`` (patch
  embedding, CLS and position tokens: 0; block ``k``: ``k + 1``; final norm and head:
  ``L + 1``) learns at ``decay ** (L + 1 - i)`` times the base rate.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("lars", "sgd", "adamw")


def decay_mask(params, exclude: tuple[str, ...] = ()):
  """True for parameters that get weight decay / LARS adaptation: kernels (ndim > 1).

  Biases, BatchNorm/LayerNorm scales and offsets (all 1-D) are excluded, and so is any
  parameter whose path contains a name in ``exclude`` (e.g. ``("cls",
  "pos_embedding")``, MAE fine-tuning's no-decay tokens).
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim > 1 and not set(_names(path)) & set(exclude), params)


def _names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


EMBEDDING_NAMES = ("patch_embed", "cls", "pos_embedding", "mask_token")
_BLOCK = re.compile(r"^block(\d+)$")


def layer_id(path_names, depth: int) -> int:
  """ViT layer of a parameter path: embeddings 0, ``block{k}`` k + 1, the rest depth + 1."""
  for name in path_names:
    if name in EMBEDDING_NAMES:
      return 0
    match = _BLOCK.match(name)
    if match:
      return int(match.group(1)) + 1
  return depth + 1


def layer_decay_multipliers(params, depth: int, decay: float):
  """Per-parameter learning-rate multipliers ``decay ** (depth + 1 - layer_id)``."""
  if not 0.0 < decay <= 1.0:
    raise ValueError(f"layer decay must be in (0, 1]; got {decay!r}.")
  return jax.tree_util.tree_map_with_path(
      lambda path, _: decay ** (depth + 1 - layer_id(_names(path), depth)), params)


def scale_by_multipliers(multipliers) -> optax.GradientTransformation:
  """Multiplies each update by its constant; after an optimiser this scales its learning
  rate (decoupled weight decay included) leaf by leaf."""
  return optax.stateless(lambda updates, params=None: jax.tree_util.tree_map(
      lambda u, m: u * jnp.asarray(m, u.dtype), updates, multipliers))


def peak_learning_rate(base_lr: float, global_batch: int, scale_by_batch: bool = True):
  """``base_lr x B / 256`` (the linear scaling rule), or ``base_lr`` unscaled."""
  return base_lr * global_batch / 256 if scale_by_batch else base_lr


def learning_rate_schedule(*, base_lr: float, global_batch: int, total_steps: int,
                           warmup_steps: int, scale_by_batch: bool = True,
                           end_lr: float = 0.0) -> optax.Schedule:
  """Linear warm-up to ``base_lr x B / 256`` (or ``base_lr``), then cosine to ``end_lr``."""
  peak = peak_learning_rate(base_lr, global_batch, scale_by_batch)
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  if warmup_steps == 0:  # the same values, without optax's warning about a 0-step ramp
    return optax.cosine_decay_schedule(
        init_value=peak, decay_steps=max(total_steps, 1),
        alpha=0.0 if peak == 0 else end_lr / peak)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=end_lr)


def scale_by_clipped_lars(learning_rate, *, weight_decay: float, trust_coefficient: float,
                          mask, eps: float = 1e-8) -> optax.GradientTransformation:
  """LARS's weight decay and trust ratio with the rate clipped (solo-learn's
  ``clip_lr=True``, the LARS of its CIFAR recipes and of FroSSL's official code).

  A kernel's update is ``(g + wd w) * min(eta ||w|| / (||g|| + wd ||w|| + eps) / lr, 1)``
  at the step's rate ``lr``; a kernel whose norm or gradient is zero gets ``g``; leaves
  outside ``mask`` (biases, norms) get ``g``: no decay, no ratio. Chain it with momentum,
  then the rate (solo-learn's order: the momentum buffer holds unscaled updates)."""
  rate = learning_rate if callable(learning_rate) else (lambda count: learning_rate)

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params):
    lr = jnp.asarray(rate(state.count), jnp.float32)

    def scale(g, w, adapt):
      if not adapt:
        return g
      w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
      trust = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
      # At lr = 0 (the first warm-up step) the ratio is unbounded: the clip gives 1.
      clipped = jnp.where(lr > 0, jnp.minimum(trust / jnp.where(lr > 0, lr, 1.0), 1.0),
                          1.0)
      scaled = ((g + weight_decay * w) * clipped).astype(g.dtype)
      return jnp.where((w_norm > 0) & (g_norm > 0), scaled, g)

    adapt = mask(params) if callable(mask) else mask
    updates = jax.tree_util.tree_map(scale, updates, params, adapt)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def make_optimizer(name: str, learning_rate, *, weight_decay: float = 0.0,
                   momentum: float = 0.9, trust_coefficient: float = 0.001,
                   clip_lr: bool = False, b1: float = 0.9, b2: float = 0.999,
                   no_decay: tuple[str, ...] = ()) -> optax.GradientTransformation:
  """An optimiser by config name (see the module docstring); parameters named in
  ``no_decay`` get no weight decay (besides the 1-D ones)."""
  mask = functools.partial(decay_mask, exclude=tuple(no_decay))
  if name == "lars" and clip_lr:
    return optax.chain(
        scale_by_clipped_lars(learning_rate, weight_decay=weight_decay,
                              trust_coefficient=trust_coefficient, mask=mask),
        optax.trace(decay=momentum), optax.scale_by_learning_rate(learning_rate))
  if clip_lr:
    raise ValueError(f"config.optimizer.clip_lr=True applies to lars only; got "
                     f"config.optimizer.name={name!r}.")
  if name == "lars":
    return optax.lars(learning_rate, weight_decay=weight_decay,
                      weight_decay_mask=mask, trust_coefficient=trust_coefficient,
                      trust_ratio_mask=mask, momentum=momentum)
  if name == "sgd":
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=mask),
                       optax.sgd(learning_rate, momentum=momentum))
  if name == "adamw":
    return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                       mask=mask)
  raise ValueError(f"config.optimizer.name must be one of {OPTIMIZERS}; got {name!r}.")


def from_config(config, total_steps: int, steps_per_epoch: int,
                no_decay: tuple[str, ...] = (), constant: bool = False):
  """``(optimiser, schedule)`` from ``config.optimizer`` and ``config.batch_size``; with
  ``constant`` the optimiser runs at the schedule's peak rate throughout (the schedule
  returned is still the warm-up and cosine one)."""
  o = config.optimizer
  schedule = learning_rate_schedule(
      base_lr=o.base_lr, global_batch=config.batch_size, total_steps=total_steps,
      warmup_steps=int(o.warmup_epochs * steps_per_epoch), scale_by_batch=o.scale_by_batch)
  rate = (peak_learning_rate(o.base_lr, config.batch_size, o.scale_by_batch) if constant
          else schedule)
  tx = make_optimizer(o.name, rate, weight_decay=o.weight_decay, momentum=o.momentum,
                      trust_coefficient=o.trust_coefficient,
                      clip_lr=o.get("clip_lr", False), b1=o.b1, b2=o.b2,
                      no_decay=no_decay)
  return tx, schedule


def ema_momentum(step, *, base: float, total_steps: int):
  """``1 - (1 - base) (cos(pi step / T) + 1) / 2``: ``base`` at step 0, 1 at the end."""
  progress = jnp.minimum(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 1.0)
  return 1.0 - (1.0 - base) * (jnp.cos(math.pi * progress) + 1.0) / 2.0


def ema_update(teacher, student, momentum):
  """``teacher <- momentum * teacher + (1 - momentum) * student`` leaf by leaf."""
  return jax.tree_util.tree_map(lambda t, s: momentum * t + (1.0 - momentum) * s,
                                teacher, student)
