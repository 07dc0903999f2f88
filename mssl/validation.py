"""Config validation: every mistake found before anything is built.

Each error names the field, the value it got and what is allowed, e.g.
``config.objective='simclr2' is not a registered objective; allowed: barlow_twins, ...``.
All problems are collected and reported together in one ``ValueError``.
"""

from __future__ import annotations

import os

import jax

from mssl import data, losses, models, optim
from mssl.steps import family
from mssl.models.vit import ATTENTION as VIT_ATTENTION

MODES = ("pretrain", "linear_eval", "finetune", "language_model")
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
  """A config that cannot run; the message lists every problem found."""


def _check_downstream(config, check) -> None:
  """linear_eval / finetune: what they take from ``config.pretrained_workdir`` (its
  config.json) fits this run: a pretraining run's workdir, an encoder this mode handles,
  an image size the encoder takes, and splits the (resolved) dataset has."""
  from mssl import export, workdir as workdir_lib
  path = config.pretrained_workdir
  try:
    pre_config, data_config = export.downstream_data(config)
  except (FileNotFoundError, workdir_lib.WorkdirError) as error:
    check(False, f"config.pretrained_workdir={path!r}: {error}")
    return
  pre_mode = pre_config.get("mode", "pretrain")
  if pre_mode != "pretrain":
    check(False, f"config.pretrained_workdir={path!r} is the workdir of a {pre_mode!r} run; "
          f"config.mode={config.mode!r} needs a pretraining run's workdir (mode='pretrain')"
          + (f", e.g. the one that run started from: {pre_config.pretrained_workdir!r}."
             if pre_config.get("pretrained_workdir") else "."))
    return
  encoder = pre_config.model.name
  if config.mode == "finetune" and not encoder.startswith("vit_"):
    check(False, f"config.pretrained_workdir={path!r} holds a {encoder!r} encoder; "
          "fine-tuning (MAE's recipe: layer decay over ViT blocks) takes a ViT encoder "
          "(vit_*). Probe a ResNet with configs/linear_eval.py.")
  size, pre_size = data_config.image_size, pre_config.data.image_size
  if encoder.startswith("vit_") and size != pre_size:
    check(False, f"config.data.image_size={size}: the {encoder!r} encoder of {path!r} was "
          f"pretrained at {pre_size} px and its position embeddings hold that grid; "
          f"evaluate it at {pre_size} (leave config.data.image_size None).")
  fields = ("train_split", "eval_split") if config.mode == "finetune" else \
      ("eval_split", "knn_split")
  for field in fields:
    problem = data.check_split(data_config.dataset, data_config[field],
                               data_dir=data_config.data_dir,
                               train_split=data_config.train_split)
    check(problem is None, f"config.data.{field}={data_config[field]!r}: {problem}")


def _check_optimizer_and_length(config, check) -> None:
  """What every trainer (pretraining, fine-tuning) needs of its optimiser and length."""
  check(config.optimizer.name in optim.OPTIMIZERS,
        f"config.optimizer.name={config.optimizer.name!r} is not allowed; allowed: "
        f"{', '.join(optim.OPTIMIZERS)}.")
  check(config.optimizer.base_lr > 0, f"config.optimizer.base_lr="
        f"{config.optimizer.base_lr} must be positive.")
  clip_lr = config.optimizer.get("clip_lr", False)
  check(isinstance(clip_lr, bool), f"config.optimizer.clip_lr={clip_lr!r} is not allowed; "
        "allowed: True or False.")
  check(not clip_lr or config.optimizer.name == "lars",
        f"config.optimizer.clip_lr=True is not allowed with config.optimizer.name="
        f"{config.optimizer.name!r}; allowed: True with lars only (it clips LARS's "
        "per-layer rate), else False.")
  check(config.total_steps == -1 or config.total_steps > 0,
        f"config.total_steps={config.total_steps} is not allowed; allowed: a positive "
        "number of steps, or -1 to train for config.num_epochs.")
  check(config.total_steps > 0 or config.num_epochs > 0,
        f"config.num_epochs={config.num_epochs} must be positive when "
        f"config.total_steps={config.total_steps} (-1: the length is set in epochs).")


def _check_embedding_plot(config, check) -> None:
  from mssl.plots import EMBEDDING_METHODS
  method = config.eval.get("embedding_plot", "auto")
  check(method in EMBEDDING_METHODS, f"config.eval.embedding_plot={method!r} is not "
        f"allowed; allowed: {', '.join(EMBEDDING_METHODS)}.")
  points = config.eval.get("embedding_points", 2000)
  check(_is_int(points) and points >= 3, f"config.eval.embedding_points={points!r} is not "
        "allowed; allowed: an integer >= 3.")


def _check_init_from(config, check) -> None:
  """``config.init_from``: a safetensors state dict of the encoder's kind, for a family
  that starts from one (the shapes are checked against the encoder when it is built)."""
  path = config.get("init_from")
  if not path:
    return
  from mssl import export
  if not family.family_of(config).INIT_FROM:
    check(False, f"config.init_from={path!r}: starting from exported weights is supported "
          f"for two-view objectives; config.objective={config.objective!r} trains a "
          f"{family.family_name(config.objective).replace('_', '-')} model.")
    return
  if not os.path.isfile(path):
    check(False, f"config.init_from={path!r} is not a file; it must be a torchvision ResNet "
          "or timm ViT state dict in safetensors (python -m mssl.export writes them).")
    return
  try:
    found = export.weights_format(path)
  except Exception as error:  # not safetensors, or another state dict
    check(False, f"config.init_from={path!r}: {error}")
    return
  want = "timm" if config.model.name.startswith("vit_") else "torchvision"
  check(found == want, f"config.init_from={path!r} holds a {found} state dict; "
        f"config.model.name={config.model.name!r} starts from a {want} one.")


def _check_loop(config, check) -> None:
  """The loop's cadences and what it keeps (:mod:`mssl.loop`), for every trainer."""
  for every in ("log_every", "eval_every", "checkpoint_every"):
    check(config[every] > 0, f"config.{every}={config[every]} must be positive.")
  check(config.keep_checkpoints >= 1,
        f"config.keep_checkpoints={config.keep_checkpoints} is not allowed; allowed: an "
        "integer >= 1 (with 0 the run would end with no checkpoint, and no model).")


def _check_batch_sizes(config, check, device_count, process_count) -> None:
  device_count = jax.device_count() if device_count is None else device_count
  process_count = jax.process_count() if process_count is None else process_count
  for field, value in (("batch_size", config.batch_size),
                       ("eval.batch_size", config.eval.batch_size)):
    check(value > 0 and value % device_count == 0 and value % process_count == 0,
          f"config.{field}={value} must be a positive multiple of the number of devices "
          f"({device_count}) and of processes ({process_count}).")


def _check_language_model(config, check) -> None:
  """``mode="language_model"`` (:mod:`mssl.trainers.language_model`)."""
  from mssl.models.causal_lm import LM_SIZES
  w, mu = config.loss.get("w"), config.loss.get("mu")
  check(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0,
        f"config.loss.w={w!r} is not allowed; allowed: a number >= 0 (MCE's weight; 0 "
        "trains with the cross-entropy alone).")
  check(isinstance(mu, (int, float)) and not isinstance(mu, bool) and mu > 0,
        f"config.loss.mu={mu!r} is not allowed; allowed: a positive number (the ridge of "
        "Q).")
  unknown = sorted(set(config.loss.keys()) - {"w", "mu"})
  check(not unknown, f"config.loss has keys {unknown} the language-model loss does not "
        "take; allowed: w, mu.")
  check(config.model.name == "causal_lm", f"config.model.name={config.model.name!r} is "
        "not allowed for config.mode='language_model'; allowed: causal_lm.")
  check(config.model.size in LM_SIZES, f"config.model.size={config.model.size!r} is not "
        f"allowed; allowed: {', '.join(LM_SIZES)}.")
  check(config.model.dtype in DTYPES, f"config.model.dtype={config.model.dtype!r} is not "
        f"allowed; allowed: {', '.join(DTYPES)}.")
  attention = config.model.get("attention", "auto")
  check(attention in VIT_ATTENTION, f"config.model.attention={attention!r} is not "
        f"allowed; allowed: {', '.join(VIT_ATTENTION)}.")
  check(config.data.dataset == "arithmetic", f"config.data.dataset="
        f"{config.data.dataset!r} is not allowed for config.mode='language_model'; "
        "allowed: arithmetic (mssl.data.arithmetic's generated word problems).")
  for field in ("train_problems", "eval_problems"):
    value = config.data[field]
    check(_is_int(value) and value >= 1, f"config.data.{field}={value!r} must be a "
          "positive integer.")
  check(_is_int(config.data.train_problems) and
        config.data.train_problems >= config.batch_size,
        f"config.data.train_problems={config.data.train_problems!r} must be at least "
        f"config.batch_size={config.batch_size} (one batch).")
  check(config.total_steps > 0, f"config.total_steps={config.total_steps} is not "
        "allowed; allowed: a positive number of steps (a language-model run's length).")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_domains(config, check) -> None:
  """The numeric fields whose out-of-domain values used to train on and report wrong
  numbers (kNN with k=0, an untrained probe, a negative warm-up) or fail deep inside
  TensorFlow or the model (a zero shuffle buffer, crop fraction or width)."""
  ev, d = config.eval, config.data
  check(_is_int(ev.knn_k) and ev.knn_k >= 1, f"config.eval.knn_k={ev.knn_k!r} is not "
        "allowed; allowed: an integer >= 1 (neighbours that vote).")
  check(_is_int(ev.probe_epochs) and ev.probe_epochs >= 1,
        f"config.eval.probe_epochs={ev.probe_epochs!r} is not allowed; allowed: an "
        "integer >= 1 (0 would report an untrained probe).")
  for group, field in (("optimizer", "warmup_epochs"), ("eval", "probe_warmup_epochs")):
    value = config[group].get(field, 0.0)
    check(value >= 0, f"config.{group}.{field}={value!r} is not allowed; allowed: >= 0 "
          "epochs (0: no warm-up).")
  check(_is_int(d.shuffle_buffer) and d.shuffle_buffer >= 1,
        f"config.data.shuffle_buffer={d.shuffle_buffer!r} is not allowed; allowed: an "
        "integer >= 1 (examples held by tf.data's shuffle).")
  check(0.0 < d.eval_crop_fraction <= 1.0,
        f"config.data.eval_crop_fraction={d.eval_crop_fraction!r} is not allowed; allowed: "
        "(0, 1] (the centre crop's share of the resized eval image).")
  if config.model.name.startswith("resnet"):
    width = config.model.get("width", 64)
    check(_is_int(width) and width >= 1, f"config.model.width={width!r} is not allowed; "
          "allowed: an integer >= 1 (the ResNet's base width).")
  overrides = d.get("preset_overrides") or {}
  for field in ("crop_scale", "crop_ratio"):
    value = overrides.get(field)
    if value is None:
      continue
    pair = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, float)) for v in value)
    low, high = ((0.0, 1.0) if field == "crop_scale" else (0.0, float("inf")))
    check(pair and low < value[0] <= value[1] <= high,
          f"config.data.preset_overrides.{field}={value!r} is not allowed; allowed: a "
          f"pair (min, max) with {low:g} < min <= max"
          + (f" <= {high:g}" if field == "crop_scale" else "") + ".")


def _check_loss(config, check) -> None:
  """``config.loss`` against the objective: known keys, values in their domains, and
  whatever the objective rejects when traced."""
  objective = config.objective
  allowed = losses.loss_keywords(objective)
  problems = losses.check_keywords(allowed, losses.loss_kwargs(config.loss), objective=objective)
  for problem in problems:
    check(False, problem)
  if problems:
    return
  try:
    family.family_of(config).trace_objective(config)
  except Exception as error:  # the objective's own message names the argument
    check(False, f"config.loss={losses.loss_kwargs(config.loss)!r} is rejected by objective "
          f"{objective!r}: {type(error).__name__}: {error}")


class _Problems:
  """The problems found so far; called as ``check(ok, message)`` by every check."""

  def __init__(self):
    self.found = []

  def __call__(self, ok, message) -> None:
    if not ok:
      self.found.append(message)


def validate(config, *, device_count: int | None = None,
             process_count: int | None = None) -> None:
  """Raises :class:`ConfigError` listing every invalid field of ``config``: the checks of
  its mode (:data:`MODE_CHECKS`), each a function of ``(config, check, device_count,
  process_count)``."""
  check = _Problems()
  check(config.mode in MODES, f"config.mode={config.mode!r} is not allowed; allowed: "
        f"{', '.join(MODES)}.")
  MODE_CHECKS.get(config.mode, _check_pretraining_run)(config, check, device_count,
                                                       process_count)
  if check.found:
    raise ConfigError("invalid config:\n  - " + "\n  - ".join(check.found))


def _check_language_model_run(config, check, device_count, process_count) -> None:
  _check_language_model(config, check)
  _check_optimizer_and_length(config, check)
  _check_loop(config, check)
  _check_batch_sizes(config, check, device_count, process_count)


def _check_downstream_run(config, check, device_count, process_count) -> None:
  """linear_eval and finetune: the pretraining workdir, the data laid over its data, and
  the fine-tune's own fields. The model and data come from the pretraining run."""
  path = config.get("pretrained_workdir")
  check(bool(path) and os.path.isdir(str(path)),
        f"config.pretrained_workdir={path!r} is not a directory; it must be the workdir "
        "of a pretraining run (holding config.json and checkpoints/).")
  if path and os.path.isdir(str(path)):
    _check_downstream(config, check)
  if config.mode == "finetune":
    _check_finetune(config, check)
    _check_optimizer_and_length(config, check)


def _check_finetune(config, check) -> None:
  f = config.finetune
  init = f.get("init", "pretrained")
  check(init in ("pretrained", "random"), f"config.finetune.init={init!r} must be "
        "'pretrained' (the encoder of pretrained_workdir) or 'random' (its architecture "
        "at random initialisation).")
  check(0.0 < f.layer_decay <= 1.0, f"config.finetune.layer_decay={f.layer_decay} must "
        "be in (0, 1].")
  check(0.0 <= f.drop_path < 1.0, f"config.finetune.drop_path={f.drop_path} must be in "
        "[0, 1).")
  check(0.0 <= f.label_smoothing < 1.0, f"config.finetune.label_smoothing="
        f"{f.label_smoothing} must be in [0, 1).")
  for name in ("mixup_alpha", "cutmix_alpha"):
    check(f[name] >= 0, f"config.finetune.{name}={f[name]} must be >= 0 (0 disables).")
  for name in ("mix_prob", "switch_prob"):
    check(0.0 <= f[name] <= 1.0, f"config.finetune.{name}={f[name]} must be in [0, 1].")


def _check_pretraining_run(config, check, device_count, process_count) -> None:
  """Pretraining: the objective and its family's checks, the loss, the optimiser, the
  input, the loop, the model, the batch sizes and the dataset."""
  names = losses.names()
  objective = config.objective
  check(objective in names, f"config.objective={objective!r} is not a registered "
        f"objective; allowed: {', '.join(names)}.")
  if objective in names:
    family.family_of(config).check_config(config, check)  # the family's own checks
    _check_loss(config, check)
    _check_init_from(config, check)
  check(0.0 <= config.ema.base <= 1.0, f"config.ema.base={config.ema.base} must be in "
        "[0, 1].")
  _check_optimizer_and_length(config, check)
  check(config.grad_accum_steps == 1,
        f"config.grad_accum_steps={config.grad_accum_steps}: gradient accumulation is "
        "not supported. The covariance and contrastive objectives are not additive over "
        "micro-batches (a covariance of half a batch is not half a covariance), so "
        "accumulating gradients would change the objective; use a larger mesh or "
        "rematerialisation (config.model.remat=True) to fit the batch instead.")
  _check_input(config, check)
  _check_loop(config, check)
  _check_embedding_plot(config, check)
  check(config.data.image_size > 0,
        f"config.data.image_size={config.data.image_size} must be a positive number of "
        "pixels.")
  _check_domains(config, check)
  _check_model(config, check)
  _check_batch_sizes(config, check, device_count, process_count)
  _check_dataset(config, check)


def _check_input(config, check) -> None:
  """The augmentation preset, the cache and where the augmentation runs."""
  check(config.data.preset in data.PRESETS,
        f"config.data.preset={config.data.preset!r} is not allowed; allowed: "
        f"{', '.join(sorted(data.PRESETS))}.")
  check(config.data.cache in data.cache.CACHE_MODES,
        f"config.data.cache={config.data.cache!r} is not allowed; allowed: "
        f"{', '.join(data.cache.CACHE_MODES)}.")
  prefetch = config.data.get("prefetch", 2)
  check(isinstance(prefetch, int) and prefetch >= 1,
        f"config.data.prefetch={prefetch!r} is not allowed; allowed: an integer >= 1 "
        "(global batches placed on the devices ahead of the step).")
  device = config.data.get("device_augment", False)
  check(isinstance(device, bool), f"config.data.device_augment={device!r} is not "
        "allowed; allowed: True (colour augmentation on the accelerator) or False.")
  crop = config.data.get("crop_on_device", False)
  check(crop in ("auto", True, False),
        f"config.data.crop_on_device={crop!r} is not allowed; allowed: auto, True, False.")
  check(not (crop is True and not device),
        "config.data.crop_on_device=True needs config.data.device_augment=True (the "
        "crop runs inside the device augmentation).")


def _check_model(config, check) -> None:
  check(config.model.name in models.ENCODERS,
        f"config.model.name={config.model.name!r} is not allowed; allowed: "
        f"{', '.join(models.ENCODERS)}.")
  check(config.model.dtype in DTYPES, f"config.model.dtype={config.model.dtype!r} is not "
        f"allowed; allowed: {', '.join(DTYPES)}.")
  if config.model.name.startswith("vit_"):
    attention = config.model.get("attention", "auto")
    check(attention in VIT_ATTENTION, f"config.model.attention={attention!r} is "
          f"not allowed; allowed: {', '.join(VIT_ATTENTION)}.")
  if config.model.name.startswith("vit_") and config.data.image_size > 0:
    check(config.model.patch_size > 0 and
          config.data.image_size % config.model.patch_size == 0,
          f"config.data.image_size={config.data.image_size} must be a positive multiple of "
          f"config.model.patch_size={config.model.patch_size} for {config.model.name!r}.")
  if config.model.name.startswith("resnet"):
    check(config.model.stem in models.resnet.STEMS, f"config.model.stem="
          f"{config.model.stem!r} is not allowed; allowed: "
          f"{', '.join(models.resnet.STEMS)}.")


def _check_dataset(config, check) -> None:
  """The data folder, the dataset (registered, prepared) and its splits; offline."""
  dataset = config.data.dataset
  data_dir = config.data.data_dir
  if data_dir is not None:
    check(os.path.isdir(data_dir), f"config.data.data_dir={data_dir!r} does not exist.")
  if data.image_folder.is_image_folder(dataset):
    root = data.image_folder.root_of(dataset)
    check(os.path.isdir(root), f"config.data.dataset={dataset!r}: the folder {root!r} does "
          "not exist (expected PATH/<split>/<label>/*.png).")
  elif unknown := data.check_dataset_name(dataset):
    check(False, f"config.data.dataset={dataset!r}: {unknown}")
  elif (not data.tfds_source.is_embedded(dataset) and not config.data.download
        and (data_dir is None or os.path.isdir(data_dir))):
    check(data.tfds_source.prepared_builder(dataset, data_dir) is not None,
          f"config.data.dataset={dataset!r} is not prepared in config.data.data_dir="
          f"{data_dir!r}. " + data.tfds_source.prepare_instructions(
              dataset, data_dir or "~/tensorflow_datasets"))
  if not any(p.startswith("config.data.dataset") for p in check.found):
    for field in ("train_split", "eval_split", "knn_split"):
      problem = data.check_split(dataset, config.data[field], data_dir=data_dir,
                                 train_split=config.data.train_split)
      check(problem is None, f"config.data.{field}={config.data[field]!r}: {problem}")


# mode -> its checks; an unknown mode gets the pretraining checks besides its own error.
MODE_CHECKS = {"pretrain": _check_pretraining_run, "linear_eval": _check_downstream_run,
               "finetune": _check_downstream_run,
               "language_model": _check_language_model_run}
