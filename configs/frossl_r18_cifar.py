"""FroSSL (any number of views: arg views=V): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/frossl_r18_cifar.py:cifar10 --workdir=/tmp/frossl_c10
    python -m mssl.main --config=configs/frossl_r18_cifar.py:cifar100 --workdir=/tmp/frossl_c100
    python -m mssl.main --config=configs/frossl_r18_cifar.py:stl10 --workdir=/tmp/frossl_stl
    python -m mssl.main --config=configs/frossl_r18_cifar.py:cifar10,views=4 --workdir=/tmp/frossl4
    python -m mssl.main --config=configs/frossl_r18_cifar.py:runlocal --workdir=/tmp/frossl_local

No published CIFAR number for this method; compare with the baselines' (README results table) under the same recipe.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.method_config("frossl", arg)
