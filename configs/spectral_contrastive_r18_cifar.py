"""Spectral contrastive loss (mu = 1): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/spectral_contrastive_r18_cifar.py:cifar10 --workdir=/tmp/spectral_contrastive_c10
    python -m mssl.main --config=configs/spectral_contrastive_r18_cifar.py:cifar100 --workdir=/tmp/spectral_contrastive_c100
    python -m mssl.main --config=configs/spectral_contrastive_r18_cifar.py:stl10 --workdir=/tmp/spectral_contrastive_stl
    python -m mssl.main --config=configs/spectral_contrastive_r18_cifar.py:runlocal --workdir=/tmp/spectral_contrastive_local

No published CIFAR number for this method; compare with the baselines' (README results table) under the same recipe.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="spectral_contrastive",
      loss=dict(mu=1.0),
      # The spectral contrastive projector of docs/methods.md: 2048-2048.
      projector=common.head((2048,), 2048), predictor=None,
      optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-5),
      preset="simclr_cifar")
