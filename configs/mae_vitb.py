"""MAE, ImageNet, ViT-B/16: the masked auto-encoder without a regulariser (lam = 0).

    python -m mssl.main --config=configs/mae_vitb.py --workdir=gs://BUCKET/mae_vitb
    python -m mssl.main --config=configs/mae_vitb.py:runlocal --workdir=/tmp/mae_local

Everything else as configs/mmae_vitb.py: the baseline M-MAE and U-MAE are measured against.
Expected: MAE's ViT-B numbers for the epoch budget (not yet reproduced with mssl).
"""

from configs import common


def get_config(arg=None):
  return common.masked_image_config("mae", "base", arg,
                                    loss=dict(lam=0.0))  # no regulariser
