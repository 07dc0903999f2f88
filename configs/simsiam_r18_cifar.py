"""SimSiam: ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/simsiam_r18_cifar.py:cifar10 --workdir=/tmp/simsiam_c10
    python -m mssl.main --config=configs/simsiam_r18_cifar.py:cifar100 --workdir=/tmp/simsiam_c100
    python -m mssl.main --config=configs/simsiam_r18_cifar.py:stl10 --workdir=/tmp/simsiam_stl
    python -m mssl.main --config=configs/simsiam_r18_cifar.py:runlocal --workdir=/tmp/simsiam_local

Expected (published, solo-learn, 1000 epochs, online linear): CIFAR-10 90.51%, CIFAR-100 66.04%.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  return common.cifar_config(
      common.parse_arg(arg, **common.CIFAR_WORDS), objective="simsiam", loss=dict(),
      # SimSiam's heads (its paper): projector 2048-2048-2048 without biases, BN, a last
      # BN without affine; predictor a 512 bottleneck, 2048-512-2048.
      projector=common.head((2048, 2048), 2048, bias=False, last_bn=True,
                            last_bn_affine=False),
      predictor=common.head((512,), 2048, bias=False),
      # The predictor keeps the peak learning rate (the official code's --fix-pred-lr,
      # which its README's commands pass; the paper: 68.1% against 67.7% with the decay).
      # Without it the CPU recipe collapsed; with it, one seed of three learns there
      # (docs/learning.md).
      optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5, predictor_lr="fixed"),
      preset="simclr_cifar")
