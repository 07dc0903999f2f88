"""M-MAE, ImageNet, ViT-B/16: MAE plus the matrix-entropy regulariser (docs/methods.md).

    python -m mssl.main --config=configs/mmae_vitb.py --workdir=gs://BUCKET/mmae_vitb
    python -m mssl.main --config=configs/mmae_vitb.py:epochs=800 --workdir=...
    python -m mssl.main --config=configs/mmae_vitb.py:runlocal --workdir=/tmp/mmae_local

L = MAE reconstruction (masked patches, per-patch normalised targets, mask ratio 0.75)
+ 0.01 * (-TCR_1(z)), z the CLS feature of the masked pass after the final LayerNorm.
mu = 1: the M-MAE paper's value for ViT-B (the official pretrain.sh, mu = 3, is the ViT-L
run; configs/mmae_vitl.py). reference_world_size = 8: the official runs trained on 8 GPUs
(8 x 128 = 1024) and their GatherLayer passes each GPU only its own rows' gradient, so the
regulariser's gradient there is 1/8 of the exact one; mssl reproduces that scale (the loss
value is unchanged; set it to 1 for the exact gradient).
AdamW (0.9, 0.95), wd 0.05 without bias/norm decay, lr 1.5e-4 x B/256, B = 1024, 40 of 200
epochs warm-up, crop 0.2-1 + flip; decoder 512 wide, 8 blocks.
Then: configs/linear_eval.py (BN head + LARS, 90 epochs) and configs/finetune.py (layer
decay 0.65, 100 epochs) on the workdir.
Expected: the linear-probe and fine-tune accuracies the M-MAE paper reports for ViT-B at
this epoch budget (not yet reproduced with mssl).
ImageNet must be prepared manually in config.data.data_dir (see the README).
"""

from configs import common


def get_config(arg=None):
  return common.masked_image_config(
      "mmae", "base", arg,
      # lam: the regulariser's weight; mu = 1: the paper's ViT-B value; the official runs'
      # gradient scale (8 GPUs, see the docstring).
      loss=dict(lam=0.01, mu=1.0, center=False, reference_world_size=8))
