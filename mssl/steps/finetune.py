"""The fine-tuning step: a pretrained ViT encoder and a linear head, the MAE way (no
TensorFlow; the trainer that runs it is :mod:`mssl.trainers.finetune`).

The encoder (patch embedding, CLS token, blocks, final norm) comes from the pretraining
workdir's newest readable checkpoint -- an M-MAE / U-MAE / MAE run, or a two-view run with
a ViT encoder -- and a new linear head classifies its CLS feature. Training follows MAE's
fine-tuning recipe, every part a config option (``config.finetune``):

* AdamW with layer-wise learning-rate decay (``layer_decay``, 0.65 for ViT-B: block ``k``
  of ``L`` learns at ``0.65 ** (L - k)`` of the head's rate; see
  :func:`mssl.optim.layer_decay_multipliers`); no weight decay on biases, norms, the CLS
  token and position embeddings; linear warm-up then cosine;
* drop-path (stochastic depth, ``drop_path``), label smoothing (``label_smoothing``),
  and mixup / cutmix (``mixup_alpha``, ``cutmix_alpha``; one of them per batch, cutmix
  with probability ``switch_prob``, mixing applied with probability ``mix_prob``), drawn on
  the device from the state's RNG, so a resumed run mixes exactly as an uninterrupted one.

Reported: top-1 accuracy on the eval split (``eval/accuracy``) every ``eval_every`` steps
and at the end (``results.json``). MAE fine-tunes on global-average-pooled tokens by
default; here the classifier reads the CLS feature after the final norm (MAE's
``--cls_token`` option), the feature the M-MAE regulariser shapes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mssl import models, optim
from mssl.steps import family
from mssl.steps.common import apply_gradients, standardize

NO_DECAY = ("cls", "pos_embedding")


class Classifier(nn.Module):
  """A ViT encoder (no head of its own) and a linear head on its CLS feature."""
  encoder: models.ViT
  num_classes: int

  def setup(self):
    self.head = nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(2e-5),
                         name="head")

  def features(self, images, train: bool = False):
    return self.encoder(standardize(images), train)

  def __call__(self, images, train: bool = False):
    return self.head(self.features(images, train).astype(jnp.float32))

  def outputs(self, images):
    features = self.features(images, False)
    return {"features": features, "logits": self.head(features.astype(jnp.float32))}


def build_classifier(pre_config, num_classes: int, drop_path: float) -> Classifier:
  """The pretraining run's ViT (size, patches, image size) with drop-path and a head."""
  name = pre_config.model.name
  if not name.startswith("vit_"):
    raise ValueError(f"fine-tuning needs a ViT encoder; the pretraining run's "
                     f"config.model.name is {name!r}.")
  encoder = family.vit_encoder(pre_config, drop_path=drop_path,
                               dtype=jnp.dtype(pre_config.model.dtype),
                               remat=pre_config.model.remat)
  return Classifier(encoder, num_classes)


def mix_batch(key, images, targets, *, mixup_alpha: float, cutmix_alpha: float,
              mix_prob: float = 1.0, switch_prob: float = 0.5):
  """Mixup or cutmix of a batch with its reverse (timm's batch mode).

  ``targets``: (N, C) soft labels. With probability ``mix_prob`` the batch is mixed: by
  cutmix (a box of area ``1 - lam`` pasted from the reversed batch, ``lam`` then set to
  the box's exact share) with probability ``switch_prob`` when both are enabled, else by
  mixup; ``lam ~ Beta(alpha, alpha)``. Targets mix with the same ``lam``.
  """
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return images, targets
  k_apply, k_switch, k_mix, k_cut, k_y, k_x = jax.random.split(key, 6)
  n, h, w, _ = images.shape
  lam_mix = (jax.random.beta(k_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0
             else jnp.ones(()))
  lam_cut = (jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0
             else jnp.ones(()))
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cut = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cut = jnp.asarray(cutmix_alpha > 0)
  # The cutmix box: sides sqrt(1 - lam) of the image, centre uniform, clipped.
  ratio = jnp.sqrt(1.0 - lam_cut)
  cy = jax.random.randint(k_y, (), 0, h)
  cx = jax.random.randint(k_x, (), 0, w)
  half_h = (ratio * h / 2).astype(jnp.int32)
  half_w = (ratio * w / 2).astype(jnp.int32)
  y0, y1 = jnp.clip(cy - half_h, 0, h), jnp.clip(cy + half_h, 0, h)
  x0, x1 = jnp.clip(cx - half_w, 0, w), jnp.clip(cx + half_w, 0, w)
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  box = ((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1))[None, :, :, None]
  lam_box = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
  flipped = images[::-1]
  mixed = jnp.where(use_cut, jnp.where(box, flipped, images),
                    lam_mix * images + (1 - lam_mix) * flipped)
  lam = jnp.where(use_cut, lam_box, lam_mix)
  apply = jax.random.uniform(k_apply) < mix_prob
  images_out = jnp.where(apply, mixed, images)
  lam = jnp.where(apply, lam, 1.0)
  return images_out, lam * targets + (1 - lam) * targets[::-1]


def make_optimizer(config, params, depth: int, total_steps: int, steps_per_epoch: int):
  tx, schedule = optim.from_config(config, total_steps, steps_per_epoch, no_decay=NO_DECAY)
  multipliers = optim.layer_decay_multipliers(params, depth, config.finetune.layer_decay)
  return optax.chain(tx, optim.scale_by_multipliers(multipliers)), schedule


def make_train_step(config, classifier: Classifier, tx, schedule, num_classes: int):
  f = config.finetune

  def loss_fn(params, images, targets, key):
    logits = classifier.apply({"params": params}, images, train=True,
                              rngs={"dropout": key})
    return optax.softmax_cross_entropy(logits, targets).mean(), logits

  def train_step(state, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    mix_key, drop_key = jax.random.split(key)
    labels = batch["label"]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), f.label_smoothing)
    images, targets = mix_batch(mix_key, batch["views"][0], targets,
                                mixup_alpha=f.mixup_alpha, cutmix_alpha=f.cutmix_alpha,
                                mix_prob=f.mix_prob, switch_prob=f.switch_prob)
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, images, targets, drop_key)
    new_state, update_metrics = apply_gradients(state, grads, tx, schedule)
    metrics = {"loss": loss, "train_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
               **update_metrics}
    return new_state, metrics

  return train_step
