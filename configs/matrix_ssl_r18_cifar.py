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
  return common.method_config("matrix_ssl", arg)
