"""Loading a pretrained encoder from a workdir: ``embed(images) -> features``.

    from mssl import export
    embed = export.load_encoder("/path/to/workdir")
    features = embed(images)      # images: float32 in [0, 1], (N, H, W, 3)

The workdir's ``config.json`` rebuilds the network and its newest readable checkpoint
supplies the weights; the encoder runs in evaluation mode (running BatchNorm statistics)
and returns its pooled features (no projector).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mssl import checkpoint as ckpt_lib


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a pretraining workdir.")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def load_variables(workdir: str, step: Optional[int] = None):
  """``(config, {"params", "batch_stats"}, num_classes, step)`` of a pretraining run."""
  from mssl import train  # the network definition lives beside the loop
  config = load_config(workdir)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  steps = checkpointer.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints.")
  num_classes = load_run_info(workdir)["num_classes"]
  network = train.build_network(config, num_classes)
  variables = train.init_variables(network, config.data.image_size, config.seed)
  optimizer, _ = train.make_optimizer(config, 1, 1)
  abstract = ckpt_lib.abstract_like(train.create_state(variables, optimizer, config.seed))
  if step is None:
    found = checkpointer.restore_latest(abstract)
    if found is None:
      raise FileNotFoundError(f"no readable checkpoint under {workdir}/checkpoints.")
    step, state, _ = found
  else:
    state, _ = checkpointer.restore(step, abstract)
  checkpointer.close()
  return config, network, {"params": state["params"],
                           "batch_stats": state["batch_stats"]}, step


def load_run_info(workdir: str) -> dict:
  """What the run derived from its data (``num_classes``, ``total_steps``)."""
  with open(os.path.join(workdir, "run.json"), encoding="utf-8") as f:
    return json.load(f)


def load_encoder(workdir: str, step: Optional[int] = None,
                 batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
  """``embed(images) -> features`` for the encoder saved in ``workdir``."""
  config, network, variables, _ = load_variables(workdir, step)
  apply = jax.jit(lambda v, x: network.apply(v, x, method=network.embed))

  def embed(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must have shape (N, H, W, 3) in [0, 1]; got "
                       f"{images.shape}.")
    out = [np.asarray(apply(variables, jnp.asarray(images[i:i + batch_size])))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32)
  embed.config = config
  return embed
