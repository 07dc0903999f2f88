"""The quickstart: Matrix-SSL on the embedded dataset with a small ResNet, on a CPU.

    python -m mssl.main --config=configs/quickstart.py --workdir=/tmp/mssl_quickstart

Pretrains a narrow ResNet-18 (CIFAR stem, width 8, 16 px views) with the Matrix-SSL
objective on ``mssl_shapes/32`` (generated locally on first use, no download) for 2000
steps of batch 128 (about 13 epochs), then evaluates the encoder with a linear probe and a
kNN classifier beside the same encoder at random initialisation and the raw pixels. About
9 minutes on a quiet 2-core CPU. Seed 0 on a 2-core AMD EPYC: linear 38.95%, kNN 39.20%
against 18.00% / 20.50% at random initialisation and 15.70% / 30.40% on raw pixels; with
``--config.data.device_augment=False`` (all augmentation on the host), over seeds 0-2:
linear 38.50% [34.85, 40.85], kNN 37.60% [35.45, 40.35] (README, *Results*; the digits
depend on the machine, docs/reproducibility.md).

The settings (width 8 and batch 128 for compute, colour jitter strong enough to remove
the per-image colour shortcut, crops of 50-100% of the image) and the runs that chose
them: docs/quickstart_tuning.md.
"""

from configs import common, matrix_ssl_r18_cifar


def get_config(arg=None):
  words = common.parse_arg(arg, steps=int)
  c = matrix_ssl_r18_cifar.get_config("runlocal")
  c.model.width = 8
  c.projector = common.head(hidden=(256,), out=256, bias=False, last_bn=True,
                            last_bn_affine=False)
  c.predictor = common.head(hidden=(128,), out=256, bias=False)
  c.batch_size = 128
  c.total_steps = words.get("steps", 2000)
  c.optimizer.update(dict(name="sgd", base_lr=0.5, weight_decay=1e-5, warmup_epochs=1.0))
  c.ema.base = 0.99
  c.data.image_size = 16               # 32 px images, viewed at 16 px: 4x less compute
  c.data.preset = "mocov3_cifar"
  c.data.preset_overrides = common.preset_overrides(
      crop_scale=(0.5, 1.0),   # objects fill 30-46% of the image
      # Colour is drawn per image and says nothing of the class: take it away.
      brightness=0.8, contrast=0.8, saturation=0.8, hue=0.5, grayscale=0.8)
  c.data.eval_split = "test[:2000]"
  c.data.knn_split = "train[:5000]"
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval.batch_size = 500
  c.eval.probe_epochs = 30
  c.eval.final = True
  c.eval.compare_random_init = True
  return c
