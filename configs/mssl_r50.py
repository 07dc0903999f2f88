"""Matrix-SSL, ImageNet, ResNet-50: the official recipe (docs/methods.md, "Matrix-SSL").

    python -m mssl.main --config=configs/mssl_r50.py --workdir=gs://BUCKET/mssl_r50
    python -m mssl.main --config=configs/mssl_r50.py:epochs=800 --workdir=...
    python -m mssl.main --config=configs/mssl_r50.py:runlocal --workdir=/tmp/mssl_local

Projector 2048-2048-2048 (no bias, BN, ReLU; last BN without affine), predictor
2048-512-2048, EMA momentum cosine 0.996 -> 1, SGD momentum 0.9, lr 0.5 x B/256,
wd 1e-5, B = 1024, 10 warm-up epochs then cosine, MoCo-v3 asymmetric augmentations
(crop 0.2-1). Loss: lam = mu = gamma = 1, order-4 Taylor logarithm.
Expected: the linear-probe accuracy reported in the Matrix-SSL paper for the chosen
epoch budget (not yet reproduced with mssl; run configs/linear_eval.py on the workdir).
ImageNet must be prepared manually in config.data.data_dir (see the README).
"""

from configs import common


def imagenet_r50(c, words):
  """ImageNet / ResNet-50 fields shared by the R50 configs."""
  common.imagenet_data(c, "mocov3")
  c.model.name = "resnet50"
  c.model.stem = "imagenet"
  c.model.zero_init_residual = True
  c.model.dtype = "bfloat16"
  c.batch_size = 1024
  c.num_epochs = float(words.get("epochs", 100))
  c.optimizer.update(dict(name="sgd", base_lr=0.5, weight_decay=1e-5, momentum=0.9,
                          warmup_epochs=10.0))
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 2000
  c.eval.batch_size = 1024
  return c


def get_config(arg=None):
  words = common.parse_arg(arg, epochs=int, runlocal=bool)
  c = imagenet_r50(common.get_config(), words)
  c.objective = "matrix_ssl"
  c.loss = common.loss_config("matrix_ssl", lam=1.0, mu=1.0, gamma=1.0, order=4,
                              logm="taylor")
  c.projector = common.head_recipe("matrix_ssl_projector")
  c.predictor = common.head_recipe("matrix_ssl_predictor")
  c.ema.base = 0.996
  if "runlocal" in words:
    common.runlocal(c)
  return c
