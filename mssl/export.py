"""Loading a pretrained encoder from a workdir: ``embed(images) -> features``.

    from mssl import export
    embed = export.load_encoder("/path/to/workdir")
    features = embed(images)      # images: float32 in [0, 1], (N, H, W, 3)

The workdir's ``config.json`` rebuilds the network (from its step module: no trainer, no
optimiser) and its newest readable checkpoint supplies the weights (only the parameter
and batch-statistics subtrees are read); the encoder runs in evaluation mode (running
BatchNorm statistics) and returns its pooled features (no projector).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mssl import checkpoint as ckpt_lib
from mssl import losses
from mssl import workdir as workdir_lib


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a pretraining workdir.")
  return ml_collections.ConfigDict(workdir_lib.read_json(path))


def downstream_data(config):
  """``(pretraining config, data config)`` of a downstream run (linear_eval, finetune) on
  ``config.pretrained_workdir``: the pretraining run's data fields with this run's
  non-None ones laid over them."""
  pre_config = load_config(config.pretrained_workdir)
  data_config = pre_config.data.copy_and_resolve_references()
  with data_config.unlocked():
    for key, value in config.data.items():
      if value is not None:
        data_config[key] = value
  return pre_config, data_config


def _abstract_variables(config, num_classes: int):
  """``(network, abstract variables)`` of the encoder a run with ``config`` trained: the
  network definition from its step module, the shapes from tracing its initialiser (no
  optimiser, no train state, nothing computed)."""
  if config.objective in losses.MASKED_IMAGE:
    from mssl.steps import masked_image
    network = masked_image.build_network(config)
    params = jax.eval_shape(lambda: masked_image.init_params(network, config.data.image_size,
                                                             config.seed))
    return network, {"params": params}
  from mssl.steps import two_view
  network = two_view.build_network(config, num_classes)
  variables = jax.eval_shape(lambda: two_view.init_variables(network, config.data.image_size,
                                                             config.seed))
  return network, {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def load_variables(workdir: str, step: Optional[int] = None):
  """``(config, network, variables, step)`` of a pretraining run (two-view or masked
  image); ``variables`` holds ``params`` (and ``batch_stats``) and ``network.embed``
  maps images to encoder features.

  Only those subtrees of the checkpointed state are read (not the optimiser state or an
  EMA teacher); the newest checkpoint that reads is used, or ``step``."""
  config = load_config(workdir)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  steps = checkpointer.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints.")
  network, abstract = _abstract_variables(config, load_run_info(workdir)["num_classes"])
  try:
    if step is None:
      found = checkpointer.restore_subtrees_latest(abstract)
      if found is None:
        raise FileNotFoundError(f"no readable checkpoint under {workdir}/checkpoints.")
      step, variables = found
    else:
      variables = checkpointer.restore_subtrees(step, abstract)
  finally:
    checkpointer.close()
  variables.setdefault("batch_stats", {})
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
  path = os.path.join(workdir, "run.json")
  info = workdir_lib.read_json(path)
  if info is None:
    raise FileNotFoundError(f"{path} not found: {workdir!r} holds no started run.")
  return info


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
