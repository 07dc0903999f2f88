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

It is Matrix-SSL's ``shapes`` recipe (``configs/matrix_ssl_r18_cifar.py:shapes``,
``configs/common.shapes``), the CPU recipe every two-view config has and
benchmarks/learning.py runs. The settings (width 8 and batch 128 for compute, colour
jitter strong enough to remove the per-image colour shortcut, crops of 50-100% of the
image) and the runs that chose them: docs/quickstart_tuning.md.
"""

from configs import common


def get_config(arg=None):
  """Matrix-SSL's ``shapes`` recipe (configs/common.shapes); ``steps=N``: another length
  than its 2000 steps; ``grey``: views for grey, small images of your own
  (``image_folder:`` digits, glyphs, scans): the ``grey_small`` preset (crops of 50-100%,
  brightness and contrast, no flips) in place of the colour jitter that the embedded
  dataset needs (README, *Your own images*)."""
  words = common.parse_arg(arg, steps=int, grey=bool)
  # Matrix-SSL as configs/matrix_ssl_r18_cifar.py states it (tests/test_configs.py checks
  # the two agree), in its CPU recipe on the embedded dataset.
  c = common.cifar_config(
      {"shapes": True, **({"steps": words["steps"]} if "steps" in words else {})},
      objective="matrix_ssl", loss=dict(lam=1.0, mu=1.0, gamma=1.0, order=4),
      projector=common.head((2048, 2048), 2048, bias=False, last_bn=True,
                            last_bn_affine=False),
      predictor=common.head((512,), 2048, bias=False),
      optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
      preset="mocov3_cifar", ema=0.996)
  if words.get("grey"):
    c.data.preset = "grey_small"
    c.data.preset_overrides = common.preset_overrides()
  return c
