"""Kernel-SSL, ImageNet, ResNet-50: Matrix-SSL's recipe with RKHS covariance operators.

    python -m mssl.main --config=configs/kernel_ssl_r50.py --workdir=gs://BUCKET/kssl_r50
    python -m mssl.main --config=configs/kernel_ssl_r50.py:kernel=polynomial --workdir=...
    python -m mssl.main --config=configs/kernel_ssl_r50.py:runlocal --workdir=/tmp/kssl

Gaussian kernel (median-heuristic bandwidth) by default, lam = mu = gamma = 1,
w_hsic = 0.003, order-4 series on B x B centred Gram matrices (see
mssl/losses/kernel_ssl.py for the derivation). No public reference number exists.
"""

from configs import common
from configs import mssl_r50


def get_config(arg=None):
  words = common.parse_arg(arg)
  c = mssl_r50.imagenet_r50(common.get_config(), words)
  c.objective = "kernel_ssl"
  c.loss.update(dict(kernel=words.get("kernel", "gaussian"), lam=1.0, mu=1.0, gamma=1.0,
                     w_hsic=0.003, order=4))
  c.teacher = "ema"
  if "runlocal" in words:
    common.runlocal(c)
  return c
