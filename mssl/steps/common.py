"""What every step shares: the input standardisation, the update, the gradient norm and
the test for the steps whose metrics the loop writes."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np
import optax

from mssl.steps.state import TrainState

# Per-channel statistics the encoder input is standardised with (ImageNet's).
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)


def standardize(images):
  """Images in [0, 1] -> the encoders' input (ImageNet mean and standard deviation)."""
  return (images - IMAGE_MEAN) / IMAGE_STD


def global_norm(tree):
  norm = getattr(getattr(optax, "tree", None), "norm", None)  # optax >= 0.2.5
  return norm(tree) if norm is not None else optax.global_norm(tree)


def embed_outputs(network):
  """``apply(variables, images) -> {"features"}``: ``network.embed`` (the encoder in
  evaluation mode) as the evaluators take it; ``variables`` without batch statistics for
  a network that has none."""
  def apply(variables, images):
    if not variables.get("batch_stats"):
      variables = {"params": variables["params"]}
    return {"features": network.apply(variables, images, method=network.embed)}
  return apply


def apply_gradients(state: TrainState, grads, tx, schedule,
                    **replaced) -> tuple[TrainState, dict]:
  """The update every step makes, written once: ``tx`` on ``grads`` (from
  ``state.params`` and ``state.opt_state``), the step counted, and the metrics each step
  logs (the learning rate of the step just taken, the gradient norm). ``replaced``: other
  state fields the step computed (e.g. ``batch_stats``). Returns ``(new state,
  metrics)``."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(**replaced, step=state.step + 1,
                            params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state)
  return new_state, {"learning_rate": schedule(state.step), "grad_norm": global_norm(grads)}


def logging_step(step, log_every: int, total_steps: Optional[int] = None):
  """Whether :func:`mssl.loop.run` writes the metrics of the step that starts from
  ``state.step == step`` (a traced scalar): it writes after steps ``step + 1`` that are
  multiples of ``log_every`` and after the last one.

  A diagnostic too costly for every step (an SVD of the batch's features) runs under
  ``jax.lax.cond(logging_step(...), ...)`` inside the one jitted step and is NaN on the
  other steps, which the loop neither checks nor writes.
  """
  done = step + 1
  logged = done % log_every == 0
  if total_steps is not None and total_steps > 0:
    logged = logged | (done == total_steps)
  return logged


def nan_scalar_like(x):
  """A NaN scalar of ``x``'s (at least float32) dtype: the value of a diagnostic on the
  steps that skip it."""
  return jnp.full((), jnp.nan, jnp.promote_types(x.dtype, jnp.float32))
