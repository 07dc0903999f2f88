"""Shared defaults of every pretraining config, and the ``runlocal`` switch.

A config file defines ``get_config(arg)``; ``arg`` is a comma-separated list of words
(``"cifar100,runlocal"``) parsed by :func:`parse_arg`. ``runlocal`` shrinks any config to
run on a CPU in minutes (a narrow ResNet-18, small batch, a few steps, the embedded
dataset), keeping its objective, heads' structure and optimiser.
"""

import ml_collections

# Projector / predictor recipes (mssl.models.heads.RECIPES) as config dicts.
MATRIX_SSL_PROJECTOR = dict(hidden=(2048, 2048), out=2048, batch_norm=True, bias=False,
                            last_bn=True, last_bn_affine=False)
MATRIX_SSL_PREDICTOR = dict(hidden=(512,), out=2048, batch_norm=True, bias=False,
                            last_bn=False, last_bn_affine=True)


class ConfigArgError(ValueError):
  """A config argument (``--config=FILE:ARG``) the config does not take."""


def parse_arg(arg, **allowed):
  """``"cifar100,runlocal,views=4"`` -> ``{"cifar100": True, "runlocal": True, "views": 4}``.

  ``allowed`` names every word the config file takes and its type: ``bool`` for a switch
  (``runlocal=bool``), ``int`` / ``float`` / ``str`` for ``word=value``. An unknown word, a
  switch given a value, a value word without one or a value of the wrong type raises
  :class:`ConfigArgError` naming the word and what the config allows (big_vision's rule:
  a misspelt word must not silently run the default).
  """
  def usage():
    return ", ".join(w if t is bool else f"{w}=<{t.__name__}>" for w, t in allowed.items())
  out = {}
  for word in (arg or "").split(","):
    word = word.strip()
    if not word:
      continue
    key, has_value, value = word.partition("=")
    if key not in allowed:
      raise ConfigArgError(f"config argument {word!r} is not known; allowed: "
                           f"{usage() or '(none)'}.")
    kind = allowed[key]
    if kind is bool:
      if has_value:
        raise ConfigArgError(f"config argument {word!r}: {key!r} is a switch and takes no "
                             f"value; allowed: {usage()}.")
      out[key] = True
      continue
    if not has_value or not value:
      raise ConfigArgError(f"config argument {word!r} needs a value: {key}=<"
                           f"{kind.__name__}>.")
    try:
      out[key] = kind(value)
    except ValueError:
      raise ConfigArgError(f"config argument {word!r}: {value!r} is not of type "
                           f"{kind.__name__}.") from None
  return out


def loss_config(objective, **values):
  """``config.loss`` for ``objective``: every hyperparameter it takes with its default
  (so any of them can be set on the command line, e.g. ``--config.loss.logm=exact``),
  updated with ``values``. Required ones without a default (MEC's ``lam_inv``, set by its
  schedule) are left out."""
  from mssl import losses  # no TensorFlow: the objectives and their registry
  block = {key: (ml_collections.FieldReference(None, field_type=float) if default is None
                 else default)
           for key, default in losses.loss_defaults(objective).items()}
  unknown = sorted(set(values) - set(block) - set(losses.loss_keywords(objective)))
  if unknown:
    raise ValueError(f"loss_config({objective!r}): unknown keys {unknown}.")
  block.update(values)
  return ml_collections.ConfigDict(block)


# Every field of mssl.data.ViewConfig, unset (None: the preset's value), so a single entry
# can be set on the command line: --config.data.preset_overrides.hue=0.5
_VIEW_FIELD_TYPES = dict(crop_scale=tuple, crop_ratio=tuple, flip=float, jitter=float,
                         brightness=float, contrast=float, saturation=float, hue=float,
                         grayscale=float, blur=float, blur_sigma=tuple, solarize=float,
                         rotation=float)


def preset_overrides(**values):
  """``config.data.preset_overrides``: ``values`` set, every other field None."""
  unknown = sorted(set(values) - set(_VIEW_FIELD_TYPES))
  if unknown:
    raise ValueError(f"unknown augmentation fields {unknown}; allowed: "
                     f"{sorted(_VIEW_FIELD_TYPES)}.")
  block = {k: ml_collections.FieldReference(values.get(k), field_type=t)
           for k, t in _VIEW_FIELD_TYPES.items()}
  return ml_collections.ConfigDict(block)


def head(hidden, out, batch_norm=True, bias=True, last_bn=False, last_bn_affine=True):
  return ml_collections.ConfigDict(dict(hidden=tuple(hidden), out=out,
                                        batch_norm=batch_norm, bias=bias, last_bn=last_bn,
                                        last_bn_affine=last_bn_affine))


def get_config():
  """The defaults: Matrix-SSL on CIFAR-10 with a ResNet-18 (overridden per config)."""
  c = ml_collections.ConfigDict()
  c.mode = "pretrain"            # "pretrain" | "linear_eval"
  c.seed = 0
  c.objective = "matrix_ssl"
  c.loss = loss_config(c.objective)  # the objective's keyword arguments (all of them)
  c.mec = ml_collections.ConfigDict(dict(eps2=64.0, warmup_epochs=10.0, start_factor=8.0))

  c.data = ml_collections.ConfigDict(dict(
      dataset="cifar10", data_dir=ml_collections.FieldReference(None, field_type=str),
      download=False, train_split="train", eval_split="test", knn_split="train[:10000]",
      image_size=32, preset="mocov3_cifar", preset_overrides=preset_overrides(), num_views=2,
      num_small_crops=0, small_size=96, shuffle_buffer=10_000, cache="auto",
      eval_crop_fraction=1.0, autotune=True,
      # Unreadable images in an image folder: skipped with a warning naming each (False),
      # or the run stops before training with the list (True).
      strict=False))

  c.model = ml_collections.ConfigDict(dict(
      name="resnet18", stem="cifar", width=64, zero_init_residual=False, dtype="float32",
      remat=False, patch_size=16,
      # ViT attention: "auto" (cuDNN's fused kernel on a GPU in 16-bit, XLA elsewhere),
      # "xla" or "cudnn"; see mssl/models/vit.py.
      attention="auto"))
  c.projector = head(**MATRIX_SSL_PROJECTOR)
  c.predictor = head(**MATRIX_SSL_PREDICTOR)   # set to None for no predictor
  c.teacher = "ema"                  # "ema" | "online" (SimSiam) | "none"
  c.ema = ml_collections.ConfigDict(dict(base=0.996))

  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", base_lr=0.5, scale_by_batch=True, weight_decay=1e-5, momentum=0.9,
      trust_coefficient=0.001, b1=0.9, b2=0.999, warmup_epochs=10.0))
  c.classifier_lr = 0.1              # the online linear probe (its own SGD)

  c.batch_size = 512                 # global
  c.num_epochs = 500.0
  c.total_steps = -1                 # > 0 overrides num_epochs
  c.grad_accum_steps = 1
  c.stop_after = -1                  # > 0: save and exit after this many steps of this run

  c.log_every = 50
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=512, knn_k=20, knn_temperature=0.07,
      probe_epochs=30, probe_lr=0.1, final=True, compare_random_init=False,
      # the offline probe: "standardize" + "sgd" (solo-learn) or MAE's "batchnorm" + "lars"
      probe_normalization="standardize", probe_optimizer="sgd", probe_warmup_epochs=0.0,
      num_previews=8,
      # Re-running a finished workdir keeps its results.json; True evaluates it again.
      reevaluate=False,
      # The final table's raw-pixel baseline: probe and kNN on images downsampled to at
      # most pixel_size x pixel_size, standardised (what an encoder has to beat).
      compare_pixels=True, pixel_size=16))
  c.distributed = ml_collections.ConfigDict(dict(
      initialize=False, coordinator_address=ml_collections.FieldReference(None, str),
      num_processes=ml_collections.FieldReference(None, int),
      process_id=ml_collections.FieldReference(None, int)))
  return c


def runlocal(c):
  """Shrinks ``c`` to run on a CPU in minutes, on the embedded dataset."""
  c.data.dataset = "mssl_shapes/32"
  c.data.image_size = 32
  c.data.preset = c.data.preset if c.data.preset.endswith("_cifar") or \
      c.data.preset in ("mae", "none") else c.data.preset + "_cifar"
  c.data.shuffle_buffer = 2_000
  c.data.eval_crop_fraction = 1.0
  c.data.autotune = False  # see mssl.data.pipeline._options: no 60 s waits on a CPU
  c.model.name = "resnet18"
  c.model.stem = "cifar"
  c.model.width = 8
  for name in ("projector", "predictor"):
    head_cfg = c.get(name)
    if head_cfg is not None:
      head_cfg.hidden = tuple(min(h, 64) for h in head_cfg.hidden)
      head_cfg.out = min(head_cfg.out, 64)
  return runlocal_schedule(c)


def runlocal_schedule(c):
  """A few steps of batch 64, logged, evaluated and saved twice; tiny eval splits."""
  c.batch_size = 64
  c.total_steps = 6
  c.optimizer.warmup_epochs = 0.0
  c.log_every = 2
  c.eval_every = 3
  c.checkpoint_every = 3
  c.eval.batch_size = 256
  c.data.eval_split = "test[:512]"
  c.data.knn_split = "train[:512]"
  c.eval.probe_epochs = 2
  c.eval.final = False
  return c


def imagenet_data(c, preset):
  """ImageNet (tfds ``imagenet2012``, prepared manually) at 224 px, centre crop 0.875."""
  c.data.dataset = "imagenet2012"
  c.data.image_size = 224
  c.data.eval_split = "validation"
  c.data.knn_split = "train[:10%]"
  c.data.eval_crop_fraction = 0.875
  c.data.preset = preset
  c.data.shuffle_buffer = 50_000
  c.data.cache = "never"
  return c


# Per-method CIFAR recipes (solo-learn's ResNet-18 CIFAR settings; docs/methods.md).
CIFAR_METHODS = {
    "matrix_ssl": dict(loss=dict(lam=1.0, mu=1.0, gamma=1.0, order=4), teacher="ema",
                       projector=MATRIX_SSL_PROJECTOR, predictor=MATRIX_SSL_PREDICTOR,
                       optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
                       preset="mocov3_cifar", ema=0.996),
    "mec": dict(loss=dict(order=4), teacher="ema", projector=MATRIX_SSL_PROJECTOR,
                predictor=MATRIX_SSL_PREDICTOR,
                optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
                preset="mocov3_cifar", ema=0.996),
    # The authors' Kernel-SSL loss (Matrix-SSL commit bf80b2e with --HSIC): linear kernel.
    "kernel_ssl": dict(loss=dict(kernel="linear", lam=1.0, mu=1.0, gamma=1.0,
                                 w_hsic=0.003, order=4, logm="taylor"), teacher="ema",
                       projector=MATRIX_SSL_PROJECTOR, predictor=MATRIX_SSL_PREDICTOR,
                       optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
                       preset="mocov3_cifar", ema=0.996),
    "simclr": dict(loss=dict(temperature=0.2), teacher="none",
                   projector=dict(hidden=(2048,), out=256),
                   optimizer=dict(name="lars", base_lr=0.4, weight_decay=1e-5),
                   preset="simclr_cifar"),
    "byol": dict(loss=dict(), teacher="ema", projector=dict(hidden=(4096,), out=256),
                 predictor=dict(hidden=(4096,), out=256),
                 optimizer=dict(name="lars", base_lr=1.0, weight_decay=1e-5),
                 preset="byol_cifar", ema=0.99),
    "simsiam": dict(loss=dict(), teacher="online",
                    projector=dict(hidden=(2048, 2048), out=2048, bias=False, last_bn=True,
                                   last_bn_affine=False),
                    predictor=dict(hidden=(512,), out=2048, bias=False),
                    optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
                    preset="simclr_cifar"),
    "barlow_twins": dict(loss=dict(lambd=0.0051, scale=0.1), teacher="none",
                         projector=dict(hidden=(2048, 2048), out=2048, bias=False),
                         optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4),
                         preset="byol_cifar"),
    "vicreg": dict(loss=dict(sim_weight=25.0, var_weight=25.0, cov_weight=1.0),
                   teacher="none", projector=dict(hidden=(2048, 2048), out=2048),
                   optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4),
                   preset="vicreg_cifar"),
    "spectral_contrastive": dict(loss=dict(mu=1.0), teacher="none",
                                 projector=dict(hidden=(2048,), out=2048),
                                 optimizer=dict(name="lars", base_lr=0.3,
                                                weight_decay=1e-5),
                                 preset="simclr_cifar"),
    "frossl": dict(loss=dict(invariance_weight=1.0), teacher="none",
                   projector=dict(hidden=(2048, 2048), out=1024),
                   optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4),
                   preset="byol_cifar"),
}
DATASETS = {  # name -> (tfds name, image size, eval split, crop fraction, FroSSL weight)
    "cifar10": ("cifar10", 32, "test", 1.0, 1.0),
    "cifar100": ("cifar100", 32, "test", 1.0, 1.0),
    "stl10": ("stl10", 96, "test", 1.0, 1.4),
}


def method_config(method, arg):
  """ResNet-18 (CIFAR stem) pretraining of ``method``; ``arg`` picks the dataset
  (cifar10 | cifar100 | stl10), ``views=V`` (FroSSL), ``kernel=K`` (Kernel-SSL) and
  ``runlocal``."""
  allowed = {d: bool for d in DATASETS}
  allowed["runlocal"] = bool
  if method == "frossl":
    allowed["views"] = int
  if method == "kernel_ssl":
    allowed["kernel"] = str
  words = parse_arg(arg, **allowed)
  chosen = [d for d in DATASETS if d in words]
  if len(chosen) > 1:
    raise ConfigArgError(f"config arguments name several datasets {chosen}; pick one.")
  recipe = CIFAR_METHODS[method]
  c = get_config()
  c.objective = method
  c.loss = loss_config(method, **recipe["loss"])
  if "kernel" in words:
    c.loss.kernel = words["kernel"]
  c.teacher = recipe["teacher"]
  c.ema.base = recipe.get("ema", 0.996)
  c.projector = head(**recipe["projector"])
  c.predictor = head(**recipe["predictor"]) if "predictor" in recipe else None
  c.optimizer.update(recipe["optimizer"])
  c.optimizer.warmup_epochs = 10.0
  c.data.preset = recipe["preset"]
  c.batch_size = 256
  c.num_epochs = 1000.0
  dataset = chosen[0] if chosen else "cifar10"
  name, size, eval_split, crop, frossl_w = DATASETS[dataset]
  c.data.dataset, c.data.image_size, c.data.eval_split = name, size, eval_split
  c.data.eval_crop_fraction = crop
  if dataset == "stl10":
    c.data.train_split = "train+unlabelled"
    c.data.knn_split = "train"
    c.data.preset = c.data.preset.replace("_cifar", "")
    c.model.stem = "cifar"
  if method == "frossl":
    c.loss.invariance_weight = frossl_w
    c.data.num_views = words.get("views", 2)
  if "runlocal" in words:
    runlocal(c)
  return c


# ------------------------------------------------------------------ masked image -------
# name -> config.loss of the masked-image objectives: the objectives' defaults (mu = 3 is
# the official M-MAE pretrain.sh, a ViT-L run). The ImageNet recipe configs set mu per
# model size and reference_world_size = 8, the official runs' GPU count (see
# mssl.losses.masked_image_objective: their regulariser gradient is 1/8 of the exact one).
MASKED_IMAGE_LOSS = {"mmae": dict(lam=0.01, mu=3.0, center=False), "umae": dict(lam=0.01),
                     "mae": dict(lam=0.0)}


def masked_image_config(objective, size, arg):
  """M-MAE / U-MAE / MAE on ImageNet with a ViT of ``size`` (docs/methods.md recipe):
  AdamW (0.9, 0.95), wd 0.05 (none on biases and norms), lr 1.5e-4 x B/256, B = 1024,
  40 warm-up epochs of 200, random-resized crop 0.2-1 + flip, mask ratio 0.75, decoder
  512 x 8. ``arg``: ``epochs=N``, ``runlocal``."""
  words = parse_arg(arg, epochs=int, runlocal=bool)
  c = get_config()
  c.objective = objective
  c.loss = loss_config(objective, **MASKED_IMAGE_LOSS[objective])
  c.projector = None
  c.predictor = None
  c.teacher = "none"
  c.mae = ml_collections.ConfigDict(dict(mask_ratio=0.75, decoder_width=512,
                                         decoder_depth=8, decoder_heads=16,
                                         norm_pix_loss=True))
  imagenet_data(c, "mae")
  c.data.num_views = 1
  c.model.name = f"vit_{size}"
  c.model.patch_size = 16
  c.model.dtype = "bfloat16"
  c.batch_size = 1024
  c.num_epochs = float(words.get("epochs", 200))
  c.optimizer.update(dict(name="adamw", base_lr=1.5e-4, b1=0.9, b2=0.95,
                          weight_decay=0.05, warmup_epochs=40.0))
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.eval.batch_size = 1024
  # MAE's linear probe: BatchNorm head without affine parameters, LARS (trust 0.001),
  # 90 epochs with 10 warm-up, lr 0.1 x 16384/256 = 6.4 (MAE's base lr at its probe batch
  # of 16384; with LARS the step is relative to the weights, so it does not shrink with
  # mssl's smaller probe batches). configs/linear_eval.py runs it offline.
  c.eval.update(dict(probe_normalization="batchnorm", probe_optimizer="lars",
                     probe_epochs=90, probe_lr=6.4, probe_warmup_epochs=10.0))
  if "runlocal" in words:
    runlocal_masked_image(c)
  return c


def runlocal_masked_image(c):
  """Shrinks a masked-image config to a micro ViT on the embedded dataset (CPU, minutes)."""
  c.data.dataset = "mssl_shapes/32"
  c.data.image_size = 32
  c.data.eval_crop_fraction = 1.0
  c.data.shuffle_buffer = 2_000
  c.data.cache = "auto"
  c.data.autotune = False
  c.model.name = "vit_micro"
  c.model.patch_size = 4
  c.model.dtype = "float32"
  c.mae.update(dict(decoder_width=64, decoder_depth=1, decoder_heads=2))
  runlocal_schedule(c)
  c.optimizer.base_lr = 1.5e-3
  c.eval.update(dict(probe_warmup_epochs=0.0, num_previews=4))
  return c
