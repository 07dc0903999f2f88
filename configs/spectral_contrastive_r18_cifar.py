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
      preset="simclr_cifar",
      # The CPU recipe: mu = 10. At mu = 1 the repulsion (at most mu, quadratic in the
      # projections' norm) is weak beside the attraction (at most 2): the projection kept
      # an effective rank of 17 of 256 and aligned what is not the shape (kNN 18.1%, below
      # random init's 20.5%). At mu = 10 the rank stays at ~140 and kNN rises to 35% by
      # step 1500 (seed 0; benchmarks/learning.py, docs/learning.md).
      shapes_recipe=dict(loss=dict(mu=10.0)))
