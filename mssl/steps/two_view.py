"""The two-view step: network, train state and ``make_train_step`` (no TensorFlow).

What a step does, for the two-view objectives of ``mssl.losses``:

* each view goes through the online network (encoder -> projector -> predictor);
* the target branch is what the objective's registry entry names (``teacher``): the EMA
  teacher (``"ema"``: Matrix-SSL, MEC, Kernel-SSL, BYOL), the online projector
  (``"online"``: SimSiam) or none (SimCLR, Barlow Twins, VICReg, spectral contrastive,
  FroSSL); only an EMA objective's state holds a teacher;
* keyword arguments the registry schedules follow the step (MEC's ``lam_inv``);
* an online linear classifier on stop-gradient features learns alongside with its own
  SGD (solo-learn's online probe); it never affects the encoder;
* the teacher follows the student with a momentum that rises from ``config.ema.base``
  to 1 on a cosine.

Objectives see the global batch (the batch is sharded over the ``data`` mesh axis and the
state replicated), so covariances and negatives are global. The trainer that runs this
step is :mod:`mssl.trainers.pretraining` (through :mod:`mssl.steps.family`).
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mssl import losses, models, optim
from mssl.steps import state as state_lib
from mssl.steps.common import apply_gradients, standardize
from mssl.steps.state import TrainState

NAME = "two_view"  # the family face: mssl.steps.family
POS_EMBEDDING = "learned"  # a ViT encoder's position embedding
INIT_FROM = True  # config.init_from (exported encoder weights) starts the encoder
CLASSIFIER = "online_classifier"
PREDICTOR = "predictor"  # the predictor's parameter key (SSLNetwork.predictor)
# config.optimizer.predictor_lr: "schedule" (the predictor follows the run's schedule) or
# "fixed" (it keeps the peak learning rate from the first step to the last: SimSiam's
# --fix-pred-lr, which its paper reports as better for the predictor).
PREDICTOR_LR = ("schedule", "fixed")


# ------------------------------------------------------------------ the network -------
class SSLNetwork(nn.Module):
  """encoder -> projector -> (predictor), plus a linear classifier on sg(features).

  The online classifier sees its input standardised by a BatchNorm without affine
  parameters (batch statistics in training, running ones in evaluation): features of an
  SSL encoder have scales that vary by orders of magnitude across dimensions and over
  training, and plain SGD on them lags the offline probe (which standardises too)."""
  encoder: nn.Module
  projector: nn.Module
  predictor: Optional[nn.Module]
  num_classes: int

  def setup(self):
    self.online_probe_norm = nn.BatchNorm(use_bias=False, use_scale=False, momentum=0.9)
    self.online_classifier = nn.Dense(self.num_classes)  # param key == CLASSIFIER

  def __call__(self, images, train: bool = True):
    x = standardize(images)
    features = self.encoder(x, train=train)
    projection = self.projector(features, train=train)
    prediction = projection if self.predictor is None else self.predictor(projection,
                                                                          train=train)
    probe_input = self.online_probe_norm(
        jax.lax.stop_gradient(features).astype(jnp.float32), use_running_average=not train)
    logits = self.online_classifier(probe_input)
    return {"features": features, "projection": projection.astype(jnp.float32),
            "prediction": prediction.astype(jnp.float32), "logits": logits}

  def embed(self, images):
    """Encoder features in evaluation mode (running BN statistics)."""
    return self.encoder(standardize(images), train=False)


def build_encoder(model_config, image_size: int):
  dtype = jnp.dtype(model_config.dtype)
  if model_config.name.startswith("resnet"):
    return models.encoder(model_config.name, stem=model_config.stem,
                          width=model_config.width,
                          zero_init_residual=model_config.zero_init_residual, dtype=dtype,
                          remat=model_config.remat)
  return models.encoder(model_config.name, patch_size=model_config.patch_size,
                        image_size=image_size, dtype=dtype, remat=model_config.remat,
                        attention=model_config.get("attention", "auto"))


def build_network(config, num_classes: int) -> SSLNetwork:
  dtype = jnp.dtype(config.model.dtype)
  head = lambda c: None if c is None else models.MLPHead(
      hidden=tuple(c.hidden), out=c.out, batch_norm=c.batch_norm, bias=c.bias,
      last_bn=c.last_bn, last_bn_affine=c.last_bn_affine, dtype=dtype)
  return SSLNetwork(build_encoder(config.model, config.data.image_size),
                    head(config.projector), head(config.get("predictor")), num_classes)


# ------------------------------------------------------------------ state -------------
@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def init_variables(network: SSLNetwork, image_size: int, seed: int) -> dict:
  """Parameters and batch statistics at initialisation. Jitted: run eagerly, every
  initialiser op compiles on its own (12 s instead of 7 s for the quickstart's ResNet on a
  CPU, up to 40 s inside a run)."""
  dummy = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  variables = network.init(jax.random.key(seed), dummy, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def make_optimizer(config, total_steps: int, steps_per_epoch: int):
  """The SSL optimiser on everything but the online classifier, which gets plain SGD;
  with ``config.optimizer.predictor_lr="fixed"`` the predictor gets the SSL optimiser at
  the schedule's peak learning rate throughout (a third group: only then does the
  optimiser state hold one, so runs without it keep theirs)."""
  ssl, schedule = optim.from_config(config, total_steps, steps_per_epoch)
  classifier = optax.sgd(optax.cosine_decay_schedule(config.classifier_lr, total_steps),
                         momentum=0.9)
  groups = {"ssl": ssl, "classifier": classifier}
  fixed = config.optimizer.get("predictor_lr", "schedule") == "fixed"
  if fixed:
    groups["predictor"], _ = optim.from_config(config, total_steps, steps_per_epoch,
                                               constant=True)

  def labels(params):
    return {k: ("classifier" if k == CLASSIFIER else
                "predictor" if fixed and k == PREDICTOR else "ssl") for k in params}
  return optax.multi_transform(groups, labels), schedule


def has_ema_teacher(config) -> bool:
  """Whether ``config.objective`` takes its targets from an EMA teacher (the registry's
  ``teacher`` kind): only then does the state hold one and the step update it."""
  return losses.spec(config.objective).teacher == "ema"


def create_state(variables: dict, tx: optax.GradientTransformation, seed: int, *,
                 ema_teacher: bool) -> TrainState:
  """The train state with batch statistics; ``ema_params`` / ``ema_batch_stats`` (the
  teacher, initialised as a copy of the online network) only with ``ema_teacher``."""
  teacher = (dict(ema_params=variables["params"], ema_batch_stats=variables["batch_stats"])
             if ema_teacher else {})
  return state_lib.create(variables["params"], tx, seed,
                          batch_stats=variables["batch_stats"], **teacher)


def initial_state(variables: dict, tx: optax.GradientTransformation,
                  config) -> TrainState:
  """The train state of ``config``'s objective (:func:`create_state`, with the EMA teacher
  when its registry entry asks for one)."""
  return create_state(variables, tx, config.seed, ema_teacher=has_ema_teacher(config))


def encoder_variables(variables: dict) -> dict:
  """What ``network.embed`` reads (parameters and batch statistics) of a train state's
  ``variables`` or of :func:`init_variables`' variables."""
  return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def encoder_params(params: dict) -> dict:
  """The encoder's subtree of the network's parameters (what export writes)."""
  return params["encoder"]


def evaluator_apply(network: SSLNetwork):
  """``apply(variables, images) -> outputs`` for :class:`mssl.eval.evaluator.Evaluator`: the
  features, the projection (whose spectrum is plotted) and the online classifier's
  logits, in evaluation mode."""
  return lambda variables, images: network.apply(variables, images, train=False)


# The family face's end-of-training preview: none (masked_image: reconstructions).
preview_images = None


# ------------------------------------------------------------------ checks ------------
def check_config(config, check) -> None:
  """The two-view checks (:mod:`mssl.validation`): enough views for the objective, and
  exactly two for one that pairs them."""
  objective = config.objective
  spec = losses.spec(objective)
  check(config.data.num_views >= spec.min_views,
        f"config.data.num_views={config.data.num_views} is too few for objective "
        f"{objective!r}; it needs at least {spec.min_views}.")
  if spec.inputs in ("pair", "two_branch"):
    check(config.data.num_views == 2,
          f"config.data.num_views={config.data.num_views}: objective {objective!r} "
          "takes exactly 2 views (use frossl for more).")
  predictor_lr = config.optimizer.get("predictor_lr", "schedule")
  check(predictor_lr in PREDICTOR_LR,
        f"config.optimizer.predictor_lr={predictor_lr!r} is not allowed; allowed: "
        f"{', '.join(PREDICTOR_LR)}.")
  check(predictor_lr == "schedule" or config.get("predictor") is not None,
        f"config.optimizer.predictor_lr={predictor_lr!r} needs a predictor; "
        f"config.predictor is None.")


def trace_objective(config) -> None:
  """Traces (no compile, no data) the objective on a tiny batch with ``config.loss``, as
  the step calls it, so that what the objective rejects fails before anything is built."""
  spec = losses.spec(config.objective)
  batch, dim = 8, 4
  x = jax.ShapeDtypeStruct((batch, dim), jnp.float32)
  context = losses.StepContext(batch_size=batch, embedding_dim=dim, steps_per_epoch=1,
                               total_steps=1)
  kwargs, schedules = losses.bind(config.objective, losses.loss_kwargs(config.loss),
                                  context)
  kwargs.update({name: schedule(0) for name, schedule in schedules.items()})
  fn = functools.partial(spec.fn, **kwargs)
  if spec.inputs == "two_branch":
    jax.eval_shape(fn, x, x, x, x)
  elif spec.inputs == "pair":
    jax.eval_shape(fn, x, x)
  else:  # multi_view
    jax.eval_shape(fn, [x] * max(2, config.data.num_views))


# ------------------------------------------------------------------ the step ----------
def make_loss_fn(config, network: SSLNetwork, steps_per_epoch: int,
                 total_steps: int = 1):
  """``loss_fn(params, state, views, labels) -> (objective + probe loss, (batch_stats,
  metrics))``: the differentiated part of :func:`make_train_step` (``params`` are the
  online network's; the EMA teacher and batch statistics come from ``state``)."""
  spec = losses.spec(config.objective)
  context = losses.StepContext(batch_size=config.batch_size,
                               embedding_dim=config.projector.out,
                               steps_per_epoch=steps_per_epoch, total_steps=total_steps)
  kwargs, schedules = losses.bind(config.objective, losses.loss_kwargs(config.loss), context)

  def forward(params, batch_stats, images):
    out, mutated = network.apply({"params": params, "batch_stats": batch_stats}, images,
                                 train=True, mutable=["batch_stats"])
    return out, mutated["batch_stats"]

  def loss_fn(params, state: TrainState, views, labels):
    batch_stats = state.batch_stats
    outs = []
    for view in views:
      out, batch_stats = forward(params, batch_stats, view)
      outs.append(out)
    extra = {name: schedule(state.step) for name, schedule in schedules.items()}
    if spec.inputs == "two_branch":
      if spec.teacher == "ema":
        targets = [forward(state.ema_params, state.ema_batch_stats, v)[0]["projection"]
                   for v in views[:2]]
      else:  # SimSiam: the online projector (the objective stops its gradient)
        targets = [o["projection"] for o in outs[:2]]
      loss, aux = spec.fn(outs[0]["prediction"], outs[1]["prediction"], targets[0],
                          targets[1], **kwargs, **extra)
    elif spec.inputs == "pair":
      loss, aux = spec.fn(outs[0]["projection"], outs[1]["projection"], **kwargs)
    else:  # multi_view
      loss, aux = spec.fn([o["projection"] for o in outs], **kwargs)
    valid = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(outs[0]["logits"],
                                                         jnp.maximum(labels, 0))
    classifier_loss = jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(valid.sum(), 1)
    accuracy = jnp.sum((jnp.argmax(outs[0]["logits"], -1) == labels) & valid) / \
        jnp.maximum(valid.sum(), 1)
    metrics = {"loss": loss, **{f"loss/{k}": v for k, v in aux.items()},
               "online_probe/train_loss": classifier_loss,
               "online_probe/train_accuracy": accuracy, **extra}
    return loss + classifier_loss, (batch_stats, metrics)

  return loss_fn


def make_train_step(config, network: SSLNetwork, tx, schedule, total_steps: int,
                    steps_per_epoch: int):
  """``train_step(state, batch) -> (state, metrics)``: every metric is cheap and computed
  on every step (the objective's components, the probe, the schedules, the gradient
  norm)."""
  loss_fn = make_loss_fn(config, network, steps_per_epoch, total_steps)
  ema_teacher = has_ema_teacher(config)

  def train_step(state, batch):
    views = batch["views"][: config.data.num_views]
    (_, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state, views, batch["label"])
    new_state, update_metrics = apply_gradients(state, grads, tx, schedule,
                                                batch_stats=batch_stats)
    metrics.update(update_metrics)
    if ema_teacher:  # the teacher follows the student (cosine momentum base -> 1)
      momentum = optim.ema_momentum(state.step, base=config.ema.base,
                                    total_steps=total_steps)
      new_state = new_state.replace(
          ema_params=optim.ema_update(state.ema_params, new_state.params, momentum),
          ema_batch_stats=optim.ema_update(state.ema_batch_stats, batch_stats, momentum))
      metrics["ema_momentum"] = momentum
    return new_state, metrics

  return train_step
