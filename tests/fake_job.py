"""A fake job for the shared loop (a two-parameter "model", no network, no input
pipeline), used by tests/test_loop.py, tests/test_checkpoint.py and tests/test_workdir.py.

The fake step adds the batch mean to the parameters; ``blow_up_at`` makes the state
non-finite after that step while its loss stays finite (as batch statistics do before the
loss follows), ``nan_loss_at`` makes the loss NaN.
"""

import os

import jax.numpy as jnp
import tensorflow as tf

from mssl import checkpoint as ckpt_lib
from mssl import loop, sharding
from mssl.steps.state import TrainState

from helpers import load_config


class FakeWriter:
  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def fake_config(**overrides):
  config = load_config("quickstart")
  config.update(dict(log_every=1, eval_every=100, checkpoint_every=1, keep_checkpoints=10,
                     stop_after=-1))
  config.update(overrides)
  return config


def fake_job(total_steps, blow_up_at=None, nan_loss_at=None):
  def train_step(state, batch):
    step = state.step + 1
    params = {"w": state.params["w"] + jnp.mean(batch["x"])}
    if blow_up_at is not None:
      params = {"w": jnp.where(step >= blow_up_at, jnp.inf, params["w"])}
    loss = jnp.float32(1.0) / step
    if nan_loss_at is not None:
      loss = jnp.where(step >= nan_loss_at, jnp.nan, loss)
    return state.replace(step=step, params=params), {"loss": loss}

  def make_data(position):
    return tf.data.Dataset.range(position, 10_000).map(
        lambda i: {"x": tf.fill([8, 2], tf.cast(i, tf.float32))})

  mesh = sharding.make_mesh()
  state = sharding.replicate(mesh, TrainState(step=jnp.zeros((), jnp.int32),
                                               params={"w": jnp.zeros((2,), jnp.float32)}))
  job = loop.Job(objective="fake", state=state,
                 train_step=loop.jit_train_step(train_step, mesh), make_data=make_data,
                 evaluate=lambda s: {}, total_steps=total_steps, run_info={})
  return job, mesh


def run_job(workdir, total_steps=4, config=None, **job_kwargs):
  job, mesh = fake_job(total_steps, **job_kwargs)
  return loop.run(config or fake_config(), str(workdir), job, mesh, FakeWriter())


def steps_on_disk(workdir):
  return ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
