"""The masked-image step: M-MAE, U-MAE and MAE in one single-branch network (no
TensorFlow; the trainer that runs it is :mod:`mssl.trainers.pretraining`, through
:mod:`mssl.steps.family`).

One view per example (random-resized crop 0.2-1 + flip), a masked auto-encoder
(``mssl.models.MAE``: ViT encoder on the visible 25% of patches, a light decoder predicting
the pixels of every patch) and the objective of :func:`mssl.losses.masked_image_objective`:

    L = reconstruction (masked patches, per-patch normalised targets)
        + lam * regulariser(z),   z = CLS feature of the masked pass after the final norm

with ``config.objective`` choosing the regulariser: ``"mmae"`` (``-TCR_mu``, lam = 0.01,
mu = 3), ``"umae"`` (mean squared cosine similarity) or ``"mae"`` (none). Everything
around the step (resume, NaN stop, checkpoints, logging) is :mod:`mssl.loop`'s.

Logged: the loss, ``loss/reconstruction``, ``loss/regularizer`` (and the coding rate or
mean squared cosine), ``effective_rank_cls`` of the masked pass's CLS features of the
batch (an SVD, computed only on the steps the loop logs and NaN on the others: see
:func:`mssl.steps.common.logging_step`), and on the eval split kNN accuracy and the effective
rank of the (unmasked) encoder's CLS features. At the end: the plots of every run,
``reconstructions.png`` (original, masked input, reconstruction) and, with
``config.eval.final``, MAE's linear probe (BatchNorm head without affine parameters, LARS)
and kNN on frozen CLS features.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mssl import losses, matrix, models, optim
from mssl.models.mae import MAEOutput
from mssl.steps import state as state_lib
from mssl.steps.common import (IMAGE_MEAN, IMAGE_STD, apply_gradients, embed_outputs,
                               logging_step, nan_scalar_like, standardize)
from mssl.steps.state import TrainState

NAME = "masked_image"  # the family face: mssl.steps.family
POS_EMBEDDING = "sincos"  # MAE's fixed 2-D sin-cos table
INIT_FROM = False  # config.init_from: not supported (exported weights hold no decoder)
DEFAULT_LAM = {"mmae": 0.01, "umae": 0.01, "mae": 0.0}


class MaskedImageNetwork(nn.Module):
  """Standardises images (ImageNet statistics) and runs the masked auto-encoder."""
  mae: models.MAE

  def __call__(self, images, rng, train: bool = True) -> MAEOutput:
    return self.mae(self.standardize(images), rng, train)

  @staticmethod
  def standardize(images):
    return standardize(images)

  def embed(self, images):
    """The unmasked encoder's CLS feature in evaluation mode (probes, kNN, export)."""
    return self.mae.encode(self.standardize(images), False)


def build_network(config, num_classes: int | None = None) -> MaskedImageNetwork:
  """The masked auto-encoder of ``config`` (``num_classes``: unused, the family face's
  argument; the network has no classifier)."""
  m = config.model
  size = m.name[len("vit_"):]
  mae = config.mae
  return MaskedImageNetwork(models.mae(
      size, patch_size=m.patch_size, image_size=config.data.image_size,
      mask_ratio=mae.mask_ratio, decoder_width=mae.decoder_width,
      decoder_depth=mae.decoder_depth, decoder_heads=mae.decoder_heads,
      norm_pix_loss=mae.norm_pix_loss, dtype=jnp.dtype(m.dtype), remat=m.remat,
      attention=m.get("attention", "auto")))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))  # eager init compiles op by op
def init_params(network: MaskedImageNetwork, image_size: int, seed: int) -> dict:
  dummy = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  key = jax.random.key(seed)
  return network.init(key, dummy, jax.random.fold_in(key, 1), train=False)["params"]


def init_variables(network: MaskedImageNetwork, image_size: int, seed: int) -> dict:
  """``{"params"}`` at initialisation (the network has no batch statistics)."""
  return {"params": init_params(network, image_size, seed)}


def make_optimizer(config, total_steps: int, steps_per_epoch: int):
  return optim.from_config(config, total_steps, steps_per_epoch)


def create_state(params, tx, seed: int) -> TrainState:
  return state_lib.create(params, tx, seed)


def initial_state(variables: dict, tx, config) -> TrainState:
  return create_state(variables["params"], tx, config.seed)


def encoder_variables(variables: dict) -> dict:
  """What ``network.embed`` reads (the parameters) of a train state's ``variables`` or of
  :func:`init_variables`' variables."""
  return {"params": variables["params"]}


def encoder_params(params: dict) -> dict:
  """The ViT encoder's subtree of the masked auto-encoder's parameters."""
  return params["mae"]["encoder"]


def evaluator_apply(network: MaskedImageNetwork):
  """``apply(variables, images) -> {"features"}`` for :class:`mssl.eval.evaluator.Evaluator`:
  the unmasked encoder's CLS feature."""
  return embed_outputs(network)


# ------------------------------------------------------------------ checks ------------
def check_config(config, check) -> None:
  """The masked-image checks (:mod:`mssl.validation`): a ViT, one view, the masked
  auto-encoder's settings, a mask ratio in [0, 1)."""
  objective = config.objective
  check(config.model.name.startswith("vit_"),
        f"config.model.name={config.model.name!r}: objective {objective!r} trains a masked "
        f"auto-encoder, which needs a ViT; allowed: "
        f"{', '.join(m for m in models.ENCODERS if m.startswith('vit_'))}.")
  check(config.data.num_views == 1, f"config.data.num_views={config.data.num_views}: "
        f"objective {objective!r} is single-branch; set it to 1.")
  mae = config.get("mae")
  check(mae is not None, f"config.mae is missing: objective {objective!r} needs the "
        "masked auto-encoder's settings (mask_ratio, decoder_width, decoder_depth, "
        "decoder_heads, norm_pix_loss); see configs/mmae_vitb.py.")
  if mae is not None:
    check(0.0 <= mae.mask_ratio < 1.0, f"config.mae.mask_ratio={mae.mask_ratio} must be "
          "in [0, 1).")


def trace_objective(config) -> None:
  """Traces (no compile, no data) :func:`mssl.losses.masked_image_objective` on a tiny
  batch with ``config.loss``, so that what it rejects fails before anything is built."""
  batch, dim = 8, 4
  x = jax.ShapeDtypeStruct((batch, dim), jnp.float32)
  tokens = jax.ShapeDtypeStruct((batch, 3, 5), jnp.float32)
  mask = jax.ShapeDtypeStruct((batch, 3), jnp.float32)
  fn = functools.partial(losses.masked_image_objective, regularizer=config.objective,
                         **losses.loss_kwargs(config.loss))
  jax.eval_shape(fn, tokens, tokens, mask, x)


def objective_settings(config) -> tuple[float, dict]:
  """``(lam, regulariser keyword arguments)`` from ``config.loss``."""
  kwargs = losses.loss_kwargs(config.loss)
  lam = float(kwargs.pop("lam", DEFAULT_LAM[config.objective]))
  return lam, kwargs


def make_loss_fn(config, network: MaskedImageNetwork):
  """``loss_fn(params, images, key) -> (loss, (components, CLS features))``: the
  differentiated part of :func:`make_train_step`; the CLS features come without gradient
  for the diagnostics."""
  lam, kwargs = objective_settings(config)

  def loss_fn(params, images, key):
    mask_key, dropout_key = jax.random.split(key)
    out = network.apply({"params": params}, images, mask_key, train=True,
                        rngs={"dropout": dropout_key})
    loss, aux = losses.masked_image_objective(out.pred, out.target, out.mask, out.cls,
                                              regularizer=config.objective, lam=lam,
                                              **kwargs)
    return loss, (aux, jax.lax.stop_gradient(out.cls))

  return loss_fn


def make_train_step(config, network: MaskedImageNetwork, tx, schedule,
                    total_steps: int | None = None, steps_per_epoch: int | None = None):
  """``train_step(state, batch) -> (state, metrics)``. ``effective_rank_cls`` (an SVD of
  the CLS batch) runs only on the steps :func:`mssl.loop.run` logs (``config.log_every``
  and, given ``total_steps``, the last), under a ``lax.cond`` inside this one step; it is
  NaN on the other steps. ``steps_per_epoch``: unused (the family face's argument)."""
  loss_fn = make_loss_fn(config, network)

  def train_step(state, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, (aux, cls)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch["views"][0], key)
    new_state, update_metrics = apply_gradients(state, grads, tx, schedule)
    rank = jax.lax.cond(logging_step(state.step, config.log_every, total_steps),
                        matrix.effective_rank, nan_scalar_like, cls)
    metrics = {"loss": loss, **{f"loss/{k}": v for k, v in aux.items()},
               "effective_rank_cls": rank, **update_metrics}
    return new_state, metrics

  return train_step


def reconstructions(network, params, images, seed: int = 0) -> dict:
  """``original``, ``masked`` and ``reconstruction`` images (N, H, W, 3) in [0, 1].

  The decoder predicts per-patch normalised pixels (``norm_pix_loss``); they are mapped
  back with each patch's own mean and variance, as in MAE's visualisation, and masked
  patches of the reconstruction are shown beside the visible ones of the input.
  """
  mae = network.mae

  # One compiled program: run op by op, the model's forward compiled each of its ops
  # separately (4.4 s of a 40-step CPU run's 36 s, measured).
  @jax.jit
  def forward(params, images):
    out = network.apply({"params": params}, images, jax.random.key(seed), train=False)
    patches = models.patchify(network.standardize(images), mae.patch_size)
    pred = out.pred.astype(jnp.float32)
    if mae.norm_pix_loss:
      mean = patches.mean(-1, keepdims=True)
      std = jnp.sqrt(patches.var(-1, keepdims=True) + 1e-6)
      pred = pred * std + mean
    shown = jnp.where(out.mask[..., None] > 0, pred, patches)
    reconstruction = models.unpatchify(shown, mae.patch_size) * IMAGE_STD + IMAGE_MEAN
    hidden = models.unpatchify(jnp.broadcast_to(out.mask[..., None], patches.shape),
                               mae.patch_size) > 0.5
    return jnp.clip(reconstruction, 0.0, 1.0), hidden

  images = np.asarray(images)
  reconstruction, hidden = jax.device_get(forward(params, jnp.asarray(images)))
  masked = np.where(hidden, 0.5, images)
  return {"original": images, "masked": masked, "reconstruction": reconstruction}


# The family face's end-of-training preview (mssl.trainers.pretraining writes it as
# reconstructions.png): original, masked input and reconstruction of eval images.
preview_images = reconstructions
