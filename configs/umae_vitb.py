"""U-MAE, ImageNet, ViT-B/16: MAE plus the uniformity regulariser
``mean_{i,j} (rn(z) rn(z)^T)_{ij}^2`` on the masked pass's CLS features, lam = 0.01.

    python -m mssl.main --config=configs/umae_vitb.py --workdir=gs://BUCKET/umae_vitb
    python -m mssl.main --config=configs/umae_vitb.py:runlocal --workdir=/tmp/umae_local

Everything else as configs/mmae_vitb.py (the same pipeline, another regulariser),
including reference_world_size = 8: U-MAE's pretrain.sh (zhangq327/U-MAE) trains on 8 GPUs
x 128 and its GatherLayer passes each GPU only its own rows' gradient, so the
regulariser's gradient there is 1/8 of the exact one; mssl reproduces that scale (same
loss value; 1 gives the exact gradient).
Expected: the U-MAE paper's ViT-B numbers for the epoch budget (not yet reproduced).
"""

from configs import common


def get_config(arg=None):
  return common.masked_image_config(
      "umae", "base", arg,
      loss=dict(lam=0.01, reference_world_size=8))  # the official run's scale (8 GPUs)
