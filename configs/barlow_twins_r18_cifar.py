"""Barlow Twins (lambd = 0.0051, scale 0.1 for LARS): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/barlow_twins_r18_cifar.py:cifar10 --workdir=/tmp/barlow_twins_c10
    python -m mssl.main --config=configs/barlow_twins_r18_cifar.py:cifar100 --workdir=/tmp/barlow_twins_c100
    python -m mssl.main --config=configs/barlow_twins_r18_cifar.py:stl10 --workdir=/tmp/barlow_twins_stl
    python -m mssl.main --config=configs/barlow_twins_r18_cifar.py:runlocal --workdir=/tmp/barlow_twins_local

Expected (published, solo-learn, 1000 epochs, online linear): CIFAR-10 92.10%, CIFAR-100 70.90%.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="barlow_twins",
      loss=dict(lambd=0.0051, scale=0.1),
      # The CIFAR Barlow Twins projector (solo-learn): 2048-2048-2048 without biases
      # (8192 wide on ImageNet).
      projector=common.head((2048, 2048), 2048, bias=False), predictor=None,
      # solo-learn's CIFAR LARS (barlow.yaml): eta 0.02 with the rate clipped.
      optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4, trust_coefficient=0.02,
                     clip_lr=True),
      preset="byol_cifar")
