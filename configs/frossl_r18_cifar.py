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
  words = common.parse_arg(arg, **common.CIFAR_WORDS, views=int)
  c = common.cifar_config(
      words, objective="frossl",
      # The invariance weight of FroSSL's recipes: 1.0 at 32 px, 1.4 on STL-10.
      loss=dict(invariance_weight=1.4 if common.cifar_dataset(words) == "stl10" else 1.0),
      # FroSSL's CIFAR projector (docs/methods.md): 2048-2048-1024.
      projector=common.head((2048, 2048), 1024), predictor=None,
      # FroSSL's LARS (docs/methods.md; its official scripts/pretrain/cifar/frossl.yaml):
      # eta 0.02 with the rate clipped, not optax's eta 0.001 unclipped.
      optimizer=dict(name="lars", base_lr=0.3, weight_decay=1e-4, trust_coefficient=0.02,
                     clip_lr=True),
      preset="byol_cifar")
  c.data.num_views = words.get("views", 2)
  return c
