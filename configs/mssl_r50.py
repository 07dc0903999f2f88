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


def get_config(arg=None):
  words = common.parse_arg(arg, epochs=int, runlocal=bool)
  c = common.imagenet_resnet50(common.get_config(), words.get("epochs", 100))
  # SGD, lr 0.5 x B/256, wd 1e-5, 10 warm-up epochs, then cosine.
  c.optimizer.update(dict(name="sgd", base_lr=0.5, weight_decay=1e-5, momentum=0.9,
                          warmup_epochs=10.0))
  c.objective = "matrix_ssl"
  c.loss = common.loss_config("matrix_ssl", lam=1.0, mu=1.0, gamma=1.0, order=4,
                              logm="taylor")
  # Matrix-SSL's heads (its official code): projector 2048-2048-2048 without biases, BN,
  # a last BN without affine; predictor 2048-512-2048.
  c.projector = common.head((2048, 2048), 2048, bias=False, last_bn=True,
                            last_bn_affine=False)
  c.predictor = common.head((512,), 2048, bias=False)
  c.ema.base = 0.996
  if "runlocal" in words:
    common.runlocal(c)
  return c
