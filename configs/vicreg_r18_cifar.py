"""VICReg (25 / 25 / 1): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/vicreg_r18_cifar.py:cifar10 --workdir=/tmp/vicreg_c10
    python -m mssl.main --config=configs/vicreg_r18_cifar.py:cifar100 --workdir=/tmp/vicreg_c100
    python -m mssl.main --config=configs/vicreg_r18_cifar.py:stl10 --workdir=/tmp/vicreg_stl
    python -m mssl.main --config=configs/vicreg_r18_cifar.py:runlocal --workdir=/tmp/vicreg_local

Expected (published, solo-learn, 1000 epochs, online linear): CIFAR-10 92.07%, CIFAR-100 68.54%.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="vicreg",
      loss=dict(sim_weight=25.0, var_weight=25.0, cov_weight=1.0),
      # solo-learn's CIFAR VICReg projector, 2048-2048-2048 (8192 wide on ImageNet).
      projector=common.head((2048, 2048), 2048), predictor=None,
      # solo-learn's CIFAR LARS (vicreg.yaml): eta 0.02 with the rate clipped.
      optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4, trust_coefficient=0.02,
                     clip_lr=True),
      preset="vicreg_cifar")
