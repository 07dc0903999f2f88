"""The quickstart: Matrix-SSL on the embedded dataset with a small ResNet, on a CPU.

    python -m mssl.main --config=configs/quickstart.py --workdir=/tmp/mssl_quickstart

Pretrains a narrow ResNet-18 (CIFAR stem, width 16, 16 px views) with the Matrix-SSL
objective on ``mssl_shapes/32`` (generated locally on first use, no download), then
evaluates the
encoder with a linear probe and a kNN classifier beside the same encoder at
random initialisation. It takes a few minutes on a 2-core CPU; see the README for the numbers
it should print.
"""

from configs import common


def get_config(arg=None):
  words = common.parse_arg(arg)
  c = common.method_config("matrix_ssl", "runlocal")
  c.model.width = 16
  c.projector = common.head(hidden=(256,), out=256, bias=False, last_bn=True,
                            last_bn_affine=False)
  c.predictor = common.head(hidden=(128,), out=256, bias=False)
  c.batch_size = 256
  c.total_steps = int(words.get("steps", 300))
  c.optimizer.update(dict(name="sgd", base_lr=0.5, weight_decay=1e-5, warmup_epochs=1.0))
  c.ema.base = 0.99
  c.data.image_size = 16               # 32 px images, viewed at 16 px: 4x less compute
  c.data.preset = "mocov3_cifar"
  # Objects fill 30-46% of the image; crops below half of it often miss the object.
  c.data.preset_overrides = {"crop_scale": (0.5, 1.0)}
  c.data.eval_split = "test[:2000]"
  c.data.knn_split = "train[:5000]"
  c.log_every = 25
  c.eval_every = 100
  c.checkpoint_every = 100
  c.eval.batch_size = 500
  c.eval.probe_epochs = 30
  c.eval.final = True
  c.eval.compare_random_init = True
  return c
