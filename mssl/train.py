"""Self-supervised pretraining, top to bottom: mesh, input, model, sharded init, a jitted
update with donated buffers, resume, evaluation, the loop.

    from mssl import train
    results = train.train_and_evaluate(config, workdir)

The data path runs one way: ``config -> input pipeline (per process) -> global sharded
batch -> jitted step (network -> embeddings -> objective -> optax) -> checkpoint / logs /
evaluators``. Objectives see the global batch (the batch is sharded over the ``data`` mesh
axis and the state replicated), so covariances and negatives are global.

What a step does, for the two-view objectives of ``mssl.losses``:

* each view goes through the online network (encoder -> projector -> predictor);
* the target branch is the EMA teacher (``config.teacher="ema"``: Matrix-SSL, MEC,
  Kernel-SSL, BYOL), the online projector (``"online"``: SimSiam) or absent (``"none"``:
  SimCLR, Barlow Twins, VICReg, spectral contrastive, FroSSL);
* an online linear classifier on stop-gradient features learns alongside with its own
  SGD (solo-learn's online probe); it never affects the encoder;
* the teacher follows the student with a momentum that rises from ``config.ema.base``
  to 1 on a cosine; MEC's ``lam_inv`` follows its warm-up schedule.

The loop stops at the first non-finite loss, naming the step and the objective's
components; checkpoints are only written for verified-finite states, so the last one is
always good. A run restarted on the same workdir resumes from its newest readable
checkpoint, with the same input position and RNG.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

# The input pipeline (TensorFlow), the loop and writers (clu) and plots (matplotlib) are
# imported inside the functions that use them: the network, state and step above the
# evaluation section import without them (benchmarks/step.py runs where none is installed).
from mssl import evaluate, losses, matrix, models, optim, sharding

# Per-channel statistics the encoder input is standardised with (ImageNet's).
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)
CLASSIFIER = "online_classifier"


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
    x = (images - IMAGE_MEAN) / IMAGE_STD
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
    return self.encoder((images - IMAGE_MEAN) / IMAGE_STD, train=False)


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
  """The SSL optimiser on everything but the online classifier, which gets plain SGD."""
  ssl, schedule = optim.from_config(config, total_steps, steps_per_epoch)
  classifier = optax.sgd(optax.cosine_decay_schedule(config.classifier_lr, total_steps),
                         momentum=0.9)
  labels = lambda params: {k: ("classifier" if k == CLASSIFIER else "ssl") for k in params}
  return optax.multi_transform({"ssl": ssl, "classifier": classifier}, labels), schedule


def has_ema_teacher(config) -> bool:
  """Whether ``config.objective`` takes its targets from an EMA teacher (the registry's
  ``teacher`` kind): only then does the state hold one and the step update it."""
  return losses.spec(config.objective).teacher == "ema"


def create_state(variables: dict, tx: optax.GradientTransformation, seed: int, *,
                 ema_teacher: bool) -> dict:
  """The train state; ``ema_params`` / ``ema_batch_stats`` (the teacher, initialised as
  a copy of the online network) only with ``ema_teacher``."""
  state = {
      "step": jnp.zeros((), jnp.int32),
      "params": variables["params"],
      "batch_stats": variables["batch_stats"],
      "opt_state": tx.init(variables["params"]),
      "rng": jax.random.key_data(jax.random.key(seed + 1)),
  }
  if ema_teacher:
    state.update(ema_params=variables["params"], ema_batch_stats=variables["batch_stats"])
  return state


# ------------------------------------------------------------------ the step ----------
def objective_kwargs(config) -> dict:
  return losses.loss_kwargs(config.loss)


def make_loss_fn(config, network: SSLNetwork, steps_per_epoch: int):
  """``loss_fn(params, state, views, labels) -> (objective + probe loss, (batch_stats,
  metrics))``: the differentiated part of :func:`make_train_step` (``params`` are the
  online network's; the EMA teacher and batch statistics come from ``state``)."""
  spec = losses.spec(config.objective)
  kwargs = objective_kwargs(config)
  mec_schedule = None
  if config.objective == "mec" and "lam_inv" not in kwargs:
    mec_schedule = losses.mec_lam_inv_schedule(
        config.batch_size, config.projector.out, steps_per_epoch, eps2=config.mec.eps2,
        warmup_epochs=config.mec.warmup_epochs, start_factor=config.mec.start_factor)

  def forward(params, batch_stats, images):
    out, mutated = network.apply({"params": params, "batch_stats": batch_stats}, images,
                                 train=True, mutable=["batch_stats"])
    return out, mutated["batch_stats"]

  def loss_fn(params, state, views, labels):
    batch_stats = state["batch_stats"]
    outs = []
    for view in views:
      out, batch_stats = forward(params, batch_stats, view)
      outs.append(out)
    extra = {}
    if mec_schedule is not None:
      extra["lam_inv"] = mec_schedule(state["step"])
    if spec.inputs == "two_branch":
      if spec.teacher == "ema":
        targets = [forward(state["ema_params"], state["ema_batch_stats"], v)[0]["projection"]
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
  norm); see :func:`logging_step` for the diagnostics that are not."""
  loss_fn = make_loss_fn(config, network, steps_per_epoch)
  ema_teacher = has_ema_teacher(config)

  def train_step(state, batch):
    views = batch["views"][: config.data.num_views]
    (_, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state, views, batch["label"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = dict(state, step=state["step"] + 1, params=params, batch_stats=batch_stats,
                     opt_state=opt_state)
    metrics.update({"learning_rate": schedule(state["step"]),
                    "grad_norm": global_norm(grads)})
    if ema_teacher:  # the teacher follows the student (cosine momentum base -> 1)
      momentum = optim.ema_momentum(state["step"], base=config.ema.base,
                                    total_steps=total_steps)
      new_state.update(
          ema_params=optim.ema_update(state["ema_params"], params, momentum),
          ema_batch_stats=optim.ema_update(state["ema_batch_stats"], batch_stats, momentum))
      metrics["ema_momentum"] = momentum
    return new_state, metrics

  return train_step


def logging_step(step, log_every: int, total_steps: Optional[int] = None):
  """Whether :func:`mssl.loop.run` writes the metrics of the step that starts from
  ``state["step"] == step`` (a traced scalar): it writes after steps ``step + 1`` that are
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


# ------------------------------------------------------------------ evaluation --------
@dataclasses.dataclass
class Evaluator:
  """kNN, classifier accuracy and embedding statistics on the eval split.

  ``apply(variables, images)`` returns a dict of per-example outputs in evaluation mode:
  ``features`` (always; what kNN and the probes use), and optionally ``projection`` (its
  spectrum is plotted) and ``logits`` (accuracy reported as ``logits_metric``). By default
  it is ``network.apply(..., train=False)`` of an :class:`SSLNetwork`.
  """
  config: ml_collections.ConfigDict
  network: Any
  mesh: Any
  num_classes: int
  apply: Optional[Any] = None
  logits_metric: str = "eval/online_probe_accuracy"
  knn: bool = True

  def __post_init__(self):
    c = self.config
    process, count = jax.process_index(), jax.process_count()
    self.local_batch = c.eval.batch_size // count

    from mssl import data as data_lib  # TensorFlow: only where eval data is loaded

    def make(split_name):
      split = data_lib.load_split(c.data.dataset, split_name, data_dir=c.data.data_dir,
                                  download=c.data.download, process_index=process,
                                  process_count=count,
                                  train_split=c.data.train_split or "train",
                                  strict=c.data.get("strict", False))
      total = split.total_examples
      num = (data_lib.eval_num_batches(total, count, self.local_batch)
             if total is not None else None)
      return functools.partial(data_lib.eval_dataset, split, batch_size=self.local_batch,
                               image_size=c.data.image_size,
                               crop_fraction=c.data.eval_crop_fraction, num_batches=num,
                               autotune=c.data.get("autotune", True))
    self._eval_data = make(c.data.eval_split)
    self._knn_data = make(c.data.knn_split) if self.knn else None

    apply = self.apply or (lambda variables, images: self.network.apply(
        variables, images, train=False))
    self._apply = jax.jit(apply, in_shardings=(sharding.replicated(self.mesh),
                                               sharding.batch_sharded(self.mesh)))

  def eval_batches(self):
    """This process's eval-split batches (numpy; padded examples have ``mask = 0``)."""
    return self._eval_data().as_numpy_iterator()

  def _outputs(self, variables, make_ds, apply=None) -> dict:
    """Every output (float32) of ``apply`` (default: the network's) and ``label`` of the
    valid (unpadded) examples."""
    apply = apply or self._apply
    collected: dict = {}
    for batch in make_ds().as_numpy_iterator():
      images = sharding.global_batch(self.mesh, batch["image"])
      host = sharding.to_host({  # one gather per batch for outputs, mask and labels
          "out": apply(variables, images),
          "meta": sharding.global_batch(self.mesh, {"mask": batch["mask"],
                                                    "label": batch["label"]})})
      valid = np.asarray(host["meta"]["mask"]) > 0
      for key, value in host["out"].items():
        collected.setdefault(key, []).append(np.asarray(value, np.float32)[valid])
      collected.setdefault("label", []).append(np.asarray(host["meta"]["label"])[valid])
    return {k: np.concatenate(v) for k, v in collected.items()}

  def __call__(self, state) -> tuple[dict, np.ndarray]:
    """``(metrics, spectrum of the projection, or of the features without one)``."""
    variables = {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
    out = self._outputs(variables, self._eval_data)
    labels = out["label"]
    labelled = labels >= 0
    metrics = {f"eval/effective_rank_{k}": float(matrix.effective_rank(jnp.asarray(out[k])))
               for k in ("features", "projection") if k in out}
    if "logits" in out and labelled.any():
      metrics[self.logits_metric] = float(np.mean(
          np.argmax(out["logits"][labelled], -1) == labels[labelled]))
    if self.knn and labelled.any():
      train_out = self._outputs(variables, self._knn_data)
      keep = train_out["label"] >= 0
      if keep.any():
        metrics["eval/knn_accuracy"] = evaluate.knn_accuracy(
            train_out["features"][keep], train_out["label"][keep],
            out["features"][labelled], labels[labelled], num_classes=self.num_classes,
            k=self.config.eval.knn_k, temperature=self.config.eval.knn_temperature)
    embedding = out.get("projection", out["features"])
    return metrics, np.asarray(matrix.embedding_spectrum(jnp.asarray(embedding)))

  def probe(self, variables, pixels: bool = False) -> dict:
    """Offline linear probe and kNN on frozen features of ``variables``' encoder, or
    (``pixels=True``) on the images' downsampled pixels (:func:`evaluate.pixel_features`),
    standardised: the baseline an encoder has to beat."""
    apply = None
    if pixels:
      size = self.config.eval.get("pixel_size", 16)
      apply = jax.jit(lambda _, images: {"features": evaluate.pixel_features(images, size)},
                      in_shardings=(sharding.replicated(self.mesh),
                                    sharding.batch_sharded(self.mesh)))
    out = self._outputs(variables, self._eval_data, apply)
    train_out = self._outputs(variables, self._knn_data, apply)
    if pixels:
      train_out["features"], out["features"] = evaluate.standardize(train_out["features"],
                                                                    out["features"])
    e = self.config.eval
    kw = dict(num_classes=self.num_classes)
    return {
        "linear_probe": evaluate.linear_probe(
            train_out["features"], train_out["label"], out["features"], out["label"],
            epochs=e.probe_epochs, lr=e.probe_lr,
            normalization=e.get("probe_normalization", "standardize"),
            optimizer=e.get("probe_optimizer", "sgd"),
            warmup_epochs=e.get("probe_warmup_epochs", 0), **kw),
        "knn": evaluate.knn_accuracy(train_out["features"], train_out["label"],
                                     out["features"], out["label"], k=e.knn_k,
                                     temperature=e.knn_temperature, **kw),
    }


# ------------------------------------------------------------------ the loop ----------
def __getattr__(name):
  # ``train.NonFiniteLossError`` without importing the loop (clu) with this module.
  if name == "NonFiniteLossError":
    from mssl import loop
    return loop.NonFiniteLossError
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass
class TrainingInput:
  """This process's training input and what follows from the dataset's size."""
  split: Any
  num_classes: int
  total_steps: int
  steps_per_epoch: int
  make_data: Any            # input position -> tf.data.Dataset of this process's batches

  def run_info(self, **extra) -> dict:
    """What a run derives from its data, saved as ``run.json`` (with ``extra``)."""
    return {"num_classes": self.num_classes, "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch, **extra}


def training_input(config, data_config=None) -> TrainingInput:
  """The training split of ``data_config`` (default ``config.data``), sharded over
  processes, with the augmented-views dataset factory every trainer feeds its loop."""
  from mssl import data as data_lib
  d = config.data if data_config is None else data_config
  process, count = jax.process_index(), jax.process_count()
  split = data_lib.load_split(d.dataset, d.train_split, data_dir=d.data_dir,
                              download=d.download, process_index=process,
                              process_count=count, train_split=d.train_split or "train",
                              strict=d.get("strict", False))
  total_steps, steps_per_epoch = steps(config, split.total_examples or config.batch_size)
  views = data_lib.preset(d.preset, **dict(d.preset_overrides))

  def make_data(position: int):
    return data_lib.train_dataset(
        split, batch_size=config.batch_size // count, image_size=d.image_size, views=views,
        num_views=d.num_views, seed=config.seed, process_index=process,
        start_batch=position, shuffle_buffer=d.shuffle_buffer, cache=d.cache,
        num_small_crops=d.num_small_crops, small_size=d.small_size,
        autotune=d.get("autotune", True))
  return TrainingInput(split, split.num_classes or 1, total_steps, steps_per_epoch,
                       make_data)


def steps(config, num_examples: int) -> tuple[int, int]:
  steps_per_epoch = max(1, num_examples // config.batch_size)
  total = (config.total_steps if config.total_steps > 0
           else int(config.num_epochs * steps_per_epoch))
  return total, steps_per_epoch


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains (resuming from ``workdir`` when it holds checkpoints), then evaluates.

  Returns the final metrics (and, with ``config.eval.final``, the offline linear-probe
  and kNN accuracies, beside those of the randomly initialised encoder when
  ``config.eval.compare_random_init``). Masked-image objectives (``mmae``, ``umae``,
  ``mae``) go to :mod:`mssl.masked_image`, ``mode="linear_eval"`` to
  :mod:`mssl.linear_eval` and ``mode="finetune"`` to :mod:`mssl.finetune`.
  """
  from mssl import validation
  from mssl import workdir as workdir_lib
  validation.validate(config)
  # One run per workdir: a second process on it stops here, naming the first.
  with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
    if config.mode == "linear_eval":
      from mssl import linear_eval
      return linear_eval.run(config, workdir)
    if config.mode == "finetune":
      from mssl import finetune
      return finetune.train_and_evaluate(config, workdir)
    if config.objective in validation.MASKED_IMAGE:
      from mssl import masked_image
      return masked_image.train_and_evaluate(config, workdir)
    return _pretrain_two_view(config, workdir)


def _pretrain_two_view(config, workdir: str) -> dict:
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  data = training_input(config)

  # Model, optimiser, state (replicated over the mesh).
  network = build_network(config, data.num_classes)
  tx, schedule = make_optimizer(config, data.total_steps, data.steps_per_epoch)
  init = jax.jit(lambda: create_state(init_variables(network, config.data.image_size,
                                                     config.seed), tx, config.seed,
                                                     ema_teacher=has_ema_teacher(config)),
                 out_shardings=sharding.replicated(mesh))
  return pretrain(
      config, workdir, mesh, state=init(),
      train_step=make_train_step(config, network, tx, schedule, data.total_steps,
                                 data.steps_per_epoch),
      evaluator=Evaluator(config, network, mesh, data.num_classes),
      make_data=data.make_data, run_info=data.run_info(),
      variables_of=lambda s: {"params": s["params"], "batch_stats": s["batch_stats"]},
      random_variables=lambda: init_variables(network, config.data.image_size,
                                              config.seed + 12345))


def pretrain(config, workdir: str, mesh, *, state, train_step, evaluator: Evaluator,
             make_data, run_info: dict, variables_of, random_variables,
             after_training=None) -> dict:
  """What every pretraining run does around its step (two-view and masked-image alike):
  the sharded, donated jit of ``train_step``, :func:`mssl.loop.run`, the plots, the
  trainer's ``after_training(state)`` hook, then (``config.eval.final``) the offline probe
  of ``variables_of(state)`` beside ``random_variables()``, printed and saved."""
  from mssl import loop, plots, writers
  is_main = jax.process_index() == 0
  step = loop.jit_train_step(train_step, mesh)
  spectrum = []

  def evaluate_and_keep_spectrum(s):
    metrics, last = evaluator(s)
    spectrum[:] = [last]
    return metrics

  writer = writers.create_writer(workdir, is_main=is_main)
  job = loop.Job(objective=config.objective, state=state, train_step=step,
                 make_data=make_data, evaluate=evaluate_and_keep_spectrum,
                 total_steps=run_info["total_steps"], run_info=run_info)
  outcome = loop.run(config, workdir, job, mesh, writer)
  state = outcome.state
  saved = loop.read_results(workdir)
  if outcome.already_finished and saved is not None and not config.eval.get("reevaluate",
                                                                            False):
    logging.warning("the workdir %s holds a finished run (step %d); its results.json is "
                    "kept as it is. Set --config.eval.reevaluate=True to evaluate it again, "
                    "or raise config.total_steps / num_epochs to train on.", workdir,
                    int(state["step"]))
    writer.close()
    return saved
  results = {"steps": int(state["step"]), "train_seconds": outcome.train_seconds,
             **outcome.eval_metrics}
  if outcome.already_finished and saved is not None:  # re-evaluated: keep what it measured
    results = {**saved, **{k: v for k, v in results.items() if k != "train_seconds"}}
  if not outcome.finished:  # stopped early (preemption, stop_after): resume later
    writer.close()
    return {**results, "stopped_early": True}
  if is_main:
    plots.write_training_plots(workdir, spectrum[0] if spectrum else None)
  if after_training is not None:
    after_training(state)
  if config.eval.final:
    final = {f"pretrained/{k}": v for k, v in evaluator.probe(variables_of(state)).items()}
    if config.eval.compare_random_init:
      final.update({f"random_init/{k}": v for k, v in evaluator.probe(
          sharding.replicate(mesh, random_variables())).items()})
    if config.eval.get("compare_pixels", True):
      final.update({f"pixels/{k}": v for k, v in evaluator.probe({}, pixels=True).items()})
    writer.write_scalars(int(state["step"]), final)
    results.update(final)
    if is_main:
      print(format_results(final))
  writer.flush()
  loop.write_results(workdir, results)
  writer.close()
  return results


def global_norm(tree):
  norm = getattr(getattr(optax, "tree", None), "norm", None)  # optax >= 0.2.5
  return norm(tree) if norm is not None else optax.global_norm(tree)


def format_results(final: dict) -> str:
  rows = ["", "                      linear probe    kNN (k=20)"]
  for prefix, name in (("pretrained", "pretrained encoder"), ("random_init", "random init"),
                       ("pixels", "raw pixels")):
    if f"{prefix}/linear_probe" in final:
      rows.append(f"{name:>20}    {100 * final[f'{prefix}/linear_probe']:10.2f}%  "
                  f"{100 * final[f'{prefix}/knn']:10.2f}%")
  rows += [f"  note: {line}." for line in evaluate.unbeaten_baselines(final)]
  return "\n".join(rows)

