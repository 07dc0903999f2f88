"""Matrix-SSL (matrix uniformity + alignment, order-4 Taylor log): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/matrix_ssl_r18_cifar.py:cifar10 --workdir=/tmp/matrix_ssl_c10
    python -m mssl.main --config=configs/matrix_ssl_r18_cifar.py:cifar100 --workdir=/tmp/matrix_ssl_c100
    python -m mssl.main --config=configs/matrix_ssl_r18_cifar.py:stl10 --workdir=/tmp/matrix_ssl_stl
    python -m mssl.main --config=configs/matrix_ssl_r18_cifar.py:runlocal --workdir=/tmp/matrix_ssl_local

No published CIFAR number for this method; compare with the baselines' (README results table) under the same recipe.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="matrix_ssl",
      loss=dict(lam=1.0, mu=1.0, gamma=1.0, order=4),
      # Matrix-SSL's heads (its official code): projector 2048-2048-2048 without biases,
      # BN, a last BN without affine; predictor 2048-512-2048.
      projector=common.head((2048, 2048), 2048, bias=False, last_bn=True,
                            last_bn_affine=False),
      predictor=common.head((512,), 2048, bias=False),
      optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
      preset="mocov3_cifar", ema=0.996)
