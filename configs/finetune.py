"""Fine-tuning a pretrained ViT encoder (MAE's recipe) from a pretraining workdir.

    python -m mssl.main --config=configs/finetune.py --workdir=/tmp/ft \\
        --config.pretrained_workdir=gs://BUCKET/mmae_vitb
    python -m mssl.main --config=configs/finetune.py:shapes --workdir=/tmp/ft_shapes \\
        --config.pretrained_workdir=/tmp/mmae_shapes

ViT-B defaults (MAE): AdamW (0.9, 0.999), lr 5e-4 x B/256, wd 0.05 (none on biases,
norms, CLS token, position embeddings), layer decay 0.65, drop-path 0.1, label smoothing
0.1, mixup 0.8 / cutmix 1.0 (one per batch, switch probability 0.5), B = 1024, 100 epochs
with 5 warm-up, random-resized crop 0.08-1 + flip (MAE adds RandAugment and random
erasing, which mssl does not implement). The dataset, splits and image size default to the
pretraining run's (``None`` fields). ``shapes``: a CPU-size run on the embedded dataset.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  words = common.parse_arg(arg, shapes=bool, runlocal=bool, steps=int)
  c = common.downstream_config("finetune")
  for key in ("dataset", "train_split", "eval_split", "image_size", "eval_crop_fraction"):
    c.data[key] = ml_collections.FieldReference(None, field_type=type(c.data[key]))
  c.data.preset = "mae"
  c.data.preset_overrides = common.preset_overrides(crop_scale=(0.08, 1.0))
  c.finetune = ml_collections.ConfigDict(dict(
      # "pretrained": the encoder of pretrained_workdir; "random": its architecture at
      # random initialisation (the baseline the pretraining has to beat).
      init="pretrained",
      layer_decay=0.65, drop_path=0.1, label_smoothing=0.1, mixup_alpha=0.8,
      cutmix_alpha=1.0, mix_prob=1.0, switch_prob=0.5))
  c.optimizer.update(dict(name="adamw", base_lr=5e-4, b1=0.9, b2=0.999, weight_decay=0.05,
                          warmup_epochs=5.0))
  c.batch_size = 1024
  c.num_epochs = 100.0
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.eval.batch_size = 1024
  if "shapes" in words or "runlocal" in words:
    c.batch_size = 128
    c.total_steps = words.get("steps", 300 if "shapes" in words else 6)
    c.optimizer.update(dict(base_lr=1e-3, warmup_epochs=0.5))
    c.finetune.update(dict(drop_path=0.0, layer_decay=0.75))
    c.data.eval_split = "test[:2000]" if "shapes" in words else "test[:512]"
    c.log_every = 25 if "shapes" in words else 2
    c.eval_every = c.checkpoint_every = 150 if "shapes" in words else 3
    c.eval.batch_size = 500 if "shapes" in words else 256
  return c
