"""Kernel-SSL (the authors' loss: Matrix-SSL plus a linear-kernel HSIC): ResNet-18 (CIFAR stem) on CIFAR-10/100 or STL-10.

    python -m mssl.main --config=configs/kernel_ssl_r18_cifar.py:cifar10 --workdir=/tmp/kernel_ssl_c10
    python -m mssl.main --config=configs/kernel_ssl_r18_cifar.py:cifar100 --workdir=/tmp/kernel_ssl_c100
    python -m mssl.main --config=configs/kernel_ssl_r18_cifar.py:stl10 --workdir=/tmp/kernel_ssl_stl
    python -m mssl.main --config=configs/kernel_ssl_r18_cifar.py:cifar10,kernel=gaussian --workdir=/tmp/kernel_ssl_rbf
    python -m mssl.main --config=configs/kernel_ssl_r18_cifar.py:runlocal --workdir=/tmp/kernel_ssl_local

The loss is the authors' training loss (yifanzhang-pro/Matrix-SSL at commit bf80b2e with
--HSIC; docs/methods.md): lam = mu = gamma = 1, order-4 Taylor logarithm, HSIC weight
0.003 in each of the four loss calls, linear kernel; EMA teacher, Matrix-SSL projector,
predictor and SGD. ``kernel=gaussian|polynomial`` selects a non-linear kernel (an mssl
extension, not the authors'). The authors published ImageNet numbers only; compare with
the baselines' (README results table) under the same recipe.
``runlocal`` runs a few steps of the same recipe on the embedded dataset (CPU, minutes).
"""

from configs import common


def get_config(arg=None):
  words = common.parse_arg(arg, **common.CIFAR_WORDS, kernel=str)
  return common.cifar_config(
      words, objective="kernel_ssl",
      # The authors' loss (Matrix-SSL bf80b2e with --HSIC): a linear-kernel HSIC.
      loss=dict(kernel=common.kernel_word(words), lam=1.0, mu=1.0, gamma=1.0,
                w_hsic=0.003, order=4, logm="taylor"),
      # Matrix-SSL's heads (its official code): projector 2048-2048-2048 without biases,
      # BN, a last BN without affine; predictor 2048-512-2048.
      projector=common.head((2048, 2048), 2048, bias=False, last_bn=True,
                            last_bn_affine=False),
      predictor=common.head((512,), 2048, bias=False),
      optimizer=dict(name="sgd", base_lr=0.5, weight_decay=1e-5),
      preset="mocov3_cifar", ema=0.996)
