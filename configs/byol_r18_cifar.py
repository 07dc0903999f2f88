"""BYOL: ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/byol_r18_cifar.py:cifar10 --workdir=/tmp/byol_c10
    python -m mssl.main --config=configs/byol_r18_cifar.py:cifar100 --workdir=/tmp/byol_c100
    python -m mssl.main --config=configs/byol_r18_cifar.py:stl10 --workdir=/tmp/byol_stl
    python -m mssl.main --config=configs/byol_r18_cifar.py:runlocal --workdir=/tmp/byol_local

Expected (published, solo-learn, 1000 epochs, online linear): CIFAR-10 92.58%, CIFAR-100 70.46%.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="byol", loss=dict(),
      # BYOL's heads (its paper): projector and predictor 4096-256 with biases, BN on the
      # hidden layer.
      projector=common.head((4096,), 256),
      predictor=common.head((4096,), 256),
      # solo-learn's CIFAR LARS for BYOL: eta 0.02 with the rate clipped. With optax's
      # eta 0.001 unclipped the CPU recipe collapsed (feature effective rank 1.7 of 64 at
      # step 1000); SGD 0.5 with weight decay 5e-4 kept a rank of 12 at the random-init
      # level (kNN 20.6%); with this LARS seeds 0 and 2 learn (26.0% / 24.5% and 28.4% /
      # 25.8%), seed 1 does not (docs/learning.md).
      optimizer=dict(name="lars", base_lr=1.0, weight_decay=1e-5, trust_coefficient=0.02,
                     clip_lr=True),
      preset="byol_cifar", ema=0.99)
