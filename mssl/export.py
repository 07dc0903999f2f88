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
from mssl import losses


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a pretraining workdir.")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def _abstract_state(config, num_classes: int):
  """``(network, abstract state)`` of the trainer that wrote a run with ``config``."""
  if config.objective in losses.MASKED_IMAGE:
    from mssl import masked_image
    network = masked_image.build_network(config)
    params = masked_image.init_params(network, config.data.image_size, config.seed)
    tx, _ = masked_image.make_optimizer(config, 1, 1)
    state = masked_image.create_state(params, tx, config.seed)
  else:
    from mssl import train  # the network definition lives beside the loop
    network = train.build_network(config, num_classes)
    variables = train.init_variables(network, config.data.image_size, config.seed)
    optimizer, _ = train.make_optimizer(config, 1, 1)
    state = train.create_state(variables, optimizer, config.seed,
                               ema_teacher=train.has_ema_teacher(config))
  return network, ckpt_lib.abstract_like(state)


def load_variables(workdir: str, step: Optional[int] = None):
  """``(config, network, variables, step)`` of a pretraining run (two-view or masked
  image); ``variables`` holds ``params`` (and ``batch_stats``) and ``network.embed``
  maps images to encoder features."""
  config = load_config(workdir)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  steps = checkpointer.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints.")
  network, abstract = _abstract_state(config, load_run_info(workdir)["num_classes"])
  if step is None:
    found = checkpointer.restore_latest(abstract)
    if found is None:
      raise FileNotFoundError(f"no readable checkpoint under {workdir}/checkpoints.")
    step, state, _ = found
  else:
    state, _ = checkpointer.restore(step, abstract)
  checkpointer.close()
  variables = {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
  return config, network, variables, step


def load_encoder_params(workdir: str, step: Optional[int] = None):
  """``(ViT encoder parameters, step)`` of a run whose encoder is a ViT: the MAE's encoder
  of a masked-image run, or ``params["encoder"]`` of a two-view run."""
  config, _, variables, step = load_variables(workdir, step)
  params = variables["params"]
  return (params["mae"]["encoder"] if config.objective in losses.MASKED_IMAGE
          else params["encoder"]), step


def embed_outputs(network):
  """``apply(variables, images) -> {"features": ...}`` for the evaluators."""
  def apply(variables, images):
    if not variables.get("batch_stats"):
      variables = {"params": variables["params"]}
    return {"features": network.apply(variables, images, method=network.embed)}
  return apply


def load_run_info(workdir: str) -> dict:
  """What the run derived from its data (``num_classes``, ``total_steps``)."""
  with open(os.path.join(workdir, "run.json"), encoding="utf-8") as f:
    return json.load(f)


def load_encoder(workdir: str, step: Optional[int] = None,
                 batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
  """``embed(images) -> features`` for the encoder saved in ``workdir``."""
  config, network, variables, _ = load_variables(workdir, step)
  apply = jax.jit(lambda v, x: embed_outputs(network)(v, x)["features"])

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
