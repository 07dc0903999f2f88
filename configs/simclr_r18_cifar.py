"""SimCLR (NT-Xent, tau = 0.2): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/simclr_r18_cifar.py:cifar10 --workdir=/tmp/simclr_c10
    python -m mssl.main --config=configs/simclr_r18_cifar.py:cifar100 --workdir=/tmp/simclr_c100
    python -m mssl.main --config=configs/simclr_r18_cifar.py:stl10 --workdir=/tmp/simclr_stl
    python -m mssl.main --config=configs/simclr_r18_cifar.py:runlocal --workdir=/tmp/simclr_local

Expected (published, solo-learn, 1000 epochs, online linear): CIFAR-10 90.74%, CIFAR-100 65.78%.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="simclr",
      loss=dict(temperature=0.2),
      # solo-learn's CIFAR projector is 2048-256 (the paper's ImageNet one 2048-128).
      # The CIFAR SimCLR projector of docs/methods.md: 2048-256.
      projector=common.head((2048,), 256), predictor=None,
      # solo-learn's CIFAR LARS (simclr.yaml): eta 0.02 with the rate clipped. (Its
      # weight decay there is 1e-4; mssl's recipe keeps 1e-5, as measured.)
      optimizer=dict(name="lars", base_lr=0.4, weight_decay=1e-5, trust_coefficient=0.02,
                     clip_lr=True),
      preset="simclr_cifar")
