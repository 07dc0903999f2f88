"""Shared defaults of every pretraining config, and the ``runlocal`` switch.

A config file defines ``get_config(arg)``; ``arg`` is a comma-separated list of words
(``"cifar100,runlocal"``) parsed by :func:`parse_arg`. ``runlocal`` shrinks any config to
run on a CPU in minutes (a narrow ResNet-18, small batch, a few steps, the embedded
dataset), keeping its objective, heads' structure and optimiser.
"""

import ml_collections



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
  """A projector / predictor MLP (``mssl.models.MLPHead``'s fields) as a config group:
  Linear + BN + ReLU per ``hidden`` width, then Linear to ``out`` (``bias``: the Linear
  layers' biases; ``last_bn``: a BN after it, ``last_bn_affine`` with scale and shift).
  Each config states its heads' widths with the published recipe they follow."""
  return ml_collections.ConfigDict(dict(hidden=tuple(hidden), out=out,
                                        batch_norm=batch_norm, bias=bias, last_bn=last_bn,
                                        last_bn_affine=last_bn_affine))



def get_config():
  """The defaults: Matrix-SSL on CIFAR-10 with a ResNet-18 (overridden per config)."""
  c = ml_collections.ConfigDict()
  c.mode = "pretrain"            # "pretrain" | "linear_eval" | "finetune"
  c.seed = 0                     # initialisation, data order, augmentation, masks
  # The encoder's initial weights: None (random), or a torchvision ResNet / timm ViT
  # state dict in safetensors (python -m mssl.export writes them; docs/transfer.md).
  c.init_from = ml_collections.FieldReference(None, field_type=str)
  c.objective = "matrix_ssl"     # a registered objective (mssl.losses.names())
  c.loss = loss_config(c.objective)  # the objective's keyword arguments (all of them)

  c.data = ml_collections.ConfigDict(dict(
      dataset="cifar10",         # tfds name, "mssl_shapes/32" or "image_folder:PATH"
      data_dir=ml_collections.FieldReference(None, field_type=str),  # tfds data_dir
      download=False,            # let tfds download and prepare a missing dataset
      train_split="train",       # tfds split syntax (train[:50%], train+unlabelled)
      eval_split="test",         # kNN / probe accuracy is measured on it
      knn_split="train[:10000]",  # the kNN memory bank and the offline probe's train set
      image_size=32,             # side of the (large) training views and eval images
      preset="mocov3_cifar",     # augmentation preset (mssl.data.views.PRESETS)
      preset_overrides=preset_overrides(),  # per-field overrides of the preset
      num_views=2,               # large views per image
      num_small_crops=0,         # multi-crop: extra small views of small_size px
      small_size=96,
      shuffle_buffer=10_000,     # examples in tf.data's shuffle buffer
      cache="auto",              # keep the decoded split in memory: auto | always | never
      eval_crop_fraction=1.0,    # eval: resize to size / fraction, then centre crop
      autotune=True,             # tf.data autotuning (off for CPU-size runs)
      # Colour jitter, grayscale, blur and solarize run on the accelerator inside the
      # jitted step (the host decodes, crops, resizes and flips, and sends uint8); False:
      # all of it on the host, as float32 (the old path).
      device_augment=True,
      # ... and the crop, resize and flip too, the host only batching whole uint8 images:
      # "auto" for small cached datasets of fixed shape (CIFAR, STL-10, mssl_shapes).
      crop_on_device="auto",
      prefetch=2,                # global batches placed on the devices ahead of the step
      # Unreadable images in an image folder: skipped with a warning naming each (False),
      # or the run stops before training with the list (True).
      strict=False))

  c.model = ml_collections.ConfigDict(dict(
      name="resnet18",           # resnet18 | resnet50 | vit_{micro,tiny,small,base,large}
      stem="cifar",              # ResNet stem: "cifar" (3x3, no pool) | "imagenet"
      width=64,                  # ResNet base width
      zero_init_residual=False,  # zero-init the last BN scale of each residual block
      dtype="float32",           # compute dtype (parameters stay float32)
      remat=False,               # rematerialise blocks (memory for compute)
      patch_size=16,             # ViT patch side
      # ViT attention: "auto" (cuDNN's fused kernel on a GPU in 16-bit, XLA elsewhere),
      # "xla" or "cudnn"; see mssl/models/vit.py.
      attention="auto"))
  # encoder features -> embedding (Matrix-SSL's projector: 2048-2048-2048, no biases, a
  # last BN without affine), then the predictor (2048-512-2048; None: no predictor)
  c.projector = head((2048, 2048), 2048, bias=False, last_bn=True, last_bn_affine=False)
  c.predictor = head((512,), 2048, bias=False)
  # The EMA teacher's momentum rises from base to 1 on a cosine (objectives whose
  # registry entry has teacher="ema"; the others keep no teacher).
  c.ema = ml_collections.ConfigDict(dict(base=0.996))

  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd",                # sgd | lars | adamw
      base_lr=0.5,               # learning rate at batch 256 when scale_by_batch
      scale_by_batch=True,       # lr = base_lr * batch_size / 256
      weight_decay=1e-5,
      momentum=0.9,              # sgd, lars
      trust_coefficient=0.001,   # lars
      clip_lr=False,             # lars: rate min(eta |w| / (|g| + wd |w|), lr) (solo-learn)
      b1=0.9, b2=0.999,          # adamw
      warmup_epochs=10.0,        # linear warm-up, then cosine decay to 0
      predictor_lr="schedule"))  # or "fixed": the predictor keeps the peak lr (SimSiam)
  c.classifier_lr = 0.1          # the online linear probe (its own SGD)

  c.batch_size = 512             # global, over all devices and processes
  c.num_epochs = 500.0
  c.total_steps = -1             # > 0 overrides num_epochs
  c.grad_accum_steps = 1         # must be 1 (see mssl/validation.py for why)
  loop_fields(c)
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=512,            # global eval batch
      knn_k=20, knn_temperature=0.07,  # weighted kNN (InstDisc's)
      probe_epochs=30, probe_lr=0.1,   # the offline linear probe
      final=True,                # offline probe + kNN at the end of training
      compare_random_init=False,  # ... also on the encoder at random initialisation
      # the offline probe: "standardize" + "sgd" (solo-learn) or MAE's "batchnorm" + "lars"
      probe_normalization="standardize", probe_optimizer="sgd", probe_warmup_epochs=0.0,
      num_previews=8,            # masked-image runs: reconstructions in the preview
      # Re-running a finished workdir keeps its results.json; True evaluates it again.
      reevaluate=False,
      # The final table's raw-pixel baseline: probe and kNN on images downsampled to at
      # most pixel_size x pixel_size, standardised (what an encoder has to beat).
      compare_pixels=True, pixel_size=16,
      # embedding.png at the end: "auto" (UMAP where umap-learn is installed, else t-SNE),
      # "umap", "tsne", "pca" or "none"; drawn from this many eval-split points.
      embedding_plot="auto", embedding_points=2000))
  return c


# What only a pretraining run reads: its objective and loss, heads, teacher, online
# classifier and starting weights. A downstream run (linear_eval, finetune) reads the
# pretraining run's from its workdir.
PRETRAINING_FIELDS = ("init_from", "objective", "loss", "projector", "predictor", "ema",
                      "classifier_lr")


def downstream_config(mode):
  """The shared defaults without :data:`PRETRAINING_FIELDS`, for the downstream ``mode``,
  with ``pretrained_workdir`` (the run to start from) to set."""
  c = get_config()
  for key in PRETRAINING_FIELDS:
    del c[key]
  del c.optimizer["predictor_lr"]  # (two-view predictors)
  c.mode = mode
  c.pretrained_workdir = ml_collections.FieldReference(None, field_type=str)
  return c


def loop_fields(c):
  """The fields of the training loop every run shares (:mod:`mssl.loop`): cadences,
  checkpoints kept, ``stop_after``, the compilation cache and multi-host set-up."""
  c.stop_after = -1              # > 0: save and exit after this many steps of this run
  c.log_every = 50               # steps between metric writes
  c.eval_every = 1000            # steps between evaluations on the eval split
  c.checkpoint_every = 1000      # steps between checkpoints
  c.keep_checkpoints = 3         # newest checkpoints kept
  # XLA's persistent compilation cache: a restarted run reuses the compiled step.
  # None: WORKDIR/compilation_cache; "" turns it off.
  c.compilation_cache_dir = ml_collections.FieldReference(None, field_type=str)
  c.distributed = ml_collections.ConfigDict(dict(  # multi-host: jax.distributed
      initialize=False, coordinator_address=ml_collections.FieldReference(None, str),
      num_processes=ml_collections.FieldReference(None, int),
      process_id=ml_collections.FieldReference(None, int)))
  return c


def runlocal(c):
  """Shrinks any pretraining config to run on a CPU in minutes, on the embedded dataset,
  keeping its objective, heads' structure and optimiser: a width-8 ResNet-18 (CIFAR stem)
  for a ResNet recipe, a micro ViT (patch 4) and a one-block decoder for a ViT one; then
  :func:`runlocal_schedule`."""
  c.data.dataset = "mssl_shapes/32"
  c.data.image_size = 32
  c.data.eval_crop_fraction = 1.0
  c.data.shuffle_buffer = 2_000
  c.data.cache = "auto"
  c.data.autotune = False  # see mssl.data.pipeline.options: no 60 s waits on a CPU
  if c.model.name.startswith("vit_"):
    c.model.name = "vit_micro"
    c.model.patch_size = 4
    c.model.dtype = "float32"
    if c.get("mae") is not None:
      c.mae.update(dict(decoder_width=64, decoder_depth=1, decoder_heads=2))
  else:
    c.data.preset = c.data.preset if c.data.preset.endswith("_cifar") or \
        c.data.preset in ("mae", "none") else c.data.preset + "_cifar"
    c.model.name = "resnet18"
    c.model.stem = "cifar"
    c.model.width = 8
    c.model.dtype = "float32"
  for name in ("projector", "predictor"):
    head_cfg = c.get(name)
    if head_cfg is not None:
      head_cfg.hidden = tuple(min(h, 64) for h in head_cfg.hidden)
      head_cfg.out = min(head_cfg.out, 64)
  runlocal_schedule(c)
  if c.model.name.startswith("vit_"):
    c.optimizer.base_lr = 1.5e-3
    c.eval.update(dict(probe_warmup_epochs=0.0, num_previews=4))
  return c


def runlocal_schedule(c):
  """A few steps of batch 64, logged, evaluated and saved twice; tiny eval splits; a PCA
  embedding.png."""
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
  # PCA for embedding.png: t-SNE of the 512 eval points costs ~10 s of a 2-core CPU, more
  # than the 6 steps themselves (set eval.embedding_plot="tsne" or "umap" to have it).
  c.eval.embedding_plot = "pca"
  return c


def imagenet_resnet50(c, epochs):
  """The ImageNet / ResNet-50 runs' data (MoCo-v3 views), network (zero-initialised
  residual branches, bfloat16), batch 1024, ``epochs`` epochs and logging cadence; each
  R50 config states its own objective, loss, heads and optimiser."""
  imagenet_data(c, "mocov3")
  c.model.name = "resnet50"
  c.model.stem = "imagenet"
  c.model.zero_init_residual = True
  c.model.dtype = "bfloat16"
  c.batch_size = 1024
  c.num_epochs = float(epochs)
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.eval.batch_size = 1024
  return c


# Kernel-SSL's kernels (config.loss.kernel): the authors' linear one, and two mssl adds.
KERNELS = ("linear", "gaussian", "polynomial")


def kernel_word(words):
  """The ``kernel=`` word of the Kernel-SSL configs: the authors' linear kernel unless
  another is named."""
  kernel = words.get("kernel", "linear")
  if kernel not in KERNELS:
    raise ValueError(f"kernel={kernel!r} is not a Kernel-SSL kernel; allowed: "
                     f"{', '.join(KERNELS)}.")
  return kernel


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


# The CIFAR-size datasets a ResNet-18 recipe runs on (config argument -> data fields).
CIFAR_DATASETS = {
    "cifar10": dict(dataset="cifar10", image_size=32, eval_split="test"),
    "cifar100": dict(dataset="cifar100", image_size=32, eval_split="test"),
    # STL-10 at 96 px: pretrains on train + unlabelled, the probe trains on train.
    "stl10": dict(dataset="stl10", image_size=96, eval_split="test",
                  train_split="train+unlabelled", knn_split="train"),
}
# The words every CIFAR recipe takes: one dataset, runlocal, and the CPU recipe on the
# embedded dataset (``shapes``, with ``steps=N``).
CIFAR_WORDS = {**{name: bool for name in CIFAR_DATASETS}, "runlocal": bool,
               "shapes": bool, "steps": int}


def cifar_dataset(words) -> str:
  """The dataset a CIFAR recipe's words name (cifar10 when none)."""
  chosen = [d for d in CIFAR_DATASETS if d in words]
  if len(chosen) > 1:
    raise ConfigArgError(f"config arguments name several datasets {chosen}; pick one.")
  return chosen[0] if chosen else "cifar10"


def cifar_config(words, *, objective, loss, projector, predictor, optimizer, preset,
                 ema=0.996, shapes_recipe=None):
  """A ResNet-18 (CIFAR stem) recipe of solo-learn's CIFAR setting (batch 256, 1000
  epochs, 10 warm-up epochs), on the dataset ``words`` name, with the method's own
  ``loss`` values, heads, ``optimizer`` fields, augmentation ``preset`` and EMA base;
  ``runlocal`` shrinks it last, ``shapes`` turns it into the CPU recipe of
  :func:`shapes`, with the method's own changes to it (``shapes_recipe``). Each
  experiment file states its recipe in one call."""
  c = get_config()
  c.objective = objective
  c.loss = loss_config(objective, **loss)
  c.projector = projector
  c.predictor = predictor
  c.ema.base = ema
  c.optimizer.update(dict(optimizer, warmup_epochs=10.0))
  c.batch_size = 256
  c.num_epochs = 1000.0
  dataset = cifar_dataset(words)
  c.data.update(CIFAR_DATASETS[dataset])
  c.data.eval_crop_fraction = 1.0
  # Blur is part of the 96 px recipes, not of the 32 px ones.
  c.data.preset = preset.replace("_cifar", "") if dataset == "stl10" else preset
  if "steps" in words and "shapes" not in words:
    raise ConfigArgError(f"config argument steps={words['steps']} is the length of the "
                         "'shapes' CPU recipe; give it with shapes (e.g. shapes,steps=500) "
                         "or set --config.total_steps.")
  if "shapes" in words:
    if "runlocal" in words or any(d in words for d in CIFAR_DATASETS):
      raise ConfigArgError("config argument 'shapes' is a recipe of its own (the embedded "
                           "dataset); it does not combine with 'runlocal' or a dataset.")
    shapes(c, steps=words.get("steps", SHAPES_STEPS), **(shapes_recipe or {}))
  if "runlocal" in words:
    runlocal(c)
  return c


# The CPU budget of the two-view ``shapes`` recipes (the quickstart's): 2000 steps of 128.
SHAPES_STEPS = 2000


def shapes(c, *, steps=SHAPES_STEPS, loss=None, optimizer=None, augment=None,
           ema=0.99, projector_width=256, predictor_hidden=128):
  """The CPU recipe of a two-view config on the embedded dataset (``mssl_shapes/32``):
  the quickstart's encoder and budget (a width-8 ResNet-18 with the CIFAR stem on 16 px
  views, batch 128, ``steps`` steps with one warm-up epoch), heads of one hidden layer of
  ``projector_width`` (the predictor's of ``predictor_hidden``) that keep the recipe's
  bias and BN choices, crops of 50-100% of the image and colour jitter strong enough to
  remove the per-image colour shortcut, and the final evaluation beside random
  initialisation and raw pixels (docs/quickstart_tuning.md chose these). The method's own
  changes: ``loss`` values, ``optimizer`` fields, ``augment`` (preset overrides) and the
  EMA base.
  Measured per objective by benchmarks/learning.py."""
  c.data.update(dict(dataset="mssl_shapes/32", image_size=16, eval_crop_fraction=1.0,
                     shuffle_buffer=2_000, cache="auto", autotune=False,
                     eval_split="test[:2000]",
                     knn_split="train[:5000]"))
  c.data.preset = c.data.preset.replace("_cifar", "") + "_cifar"
  c.data.preset_overrides = preset_overrides(**dict(
      crop_scale=(0.5, 1.0),   # objects fill 30-46% of the image
      # Colour is drawn per image and says nothing of the class: take it away.
      brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5, grayscale=0.8,
      **(augment or {})))
  c.model.update(dict(name="resnet18", stem="cifar", width=8, dtype="float32"))
  for name, hidden in (("projector", projector_width), ("predictor", predictor_hidden)):
    head_cfg = c.get(name)
    if head_cfg is not None:
      head_cfg.hidden = (hidden,)
      head_cfg.out = projector_width
  c.loss.update(loss or {})
  c.batch_size = 128
  c.total_steps = steps
  c.optimizer.update(dict(optimizer or {}, warmup_epochs=1.0))
  c.ema.base = ema
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval.update(dict(batch_size=500, probe_epochs=30, final=True,
                     compare_random_init=True))
  return c


# ------------------------------------------------------------------ masked image -------
def masked_image_config(objective, size, arg, loss):
  """M-MAE / U-MAE / MAE on ImageNet with a ViT of ``size`` (docs/methods.md recipe):
  AdamW (0.9, 0.95), wd 0.05 (none on biases and norms), lr 1.5e-4 x B/256, B = 1024,
  40 warm-up epochs of 200, random-resized crop 0.2-1 + flip, mask ratio 0.75, decoder
  512 x 8. ``arg``: ``epochs=N``, ``runlocal``. ``loss``: the objective's
  ``config.loss`` values, stated by each config (lam, mu, reference_world_size)."""
  words = parse_arg(arg, epochs=int, runlocal=bool)
  c = get_config()
  c.objective = objective
  c.loss = loss_config(objective, **loss)
  c.projector = None
  c.predictor = None
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
    runlocal(c)
  return c
