"""M-MAE (or U-MAE / MAE) on the embedded dataset with a micro ViT: a CPU run in minutes.

    python -m mssl.main --config=configs/mmae_shapes.py --workdir=/tmp/mmae_shapes
    python -m mssl.main --config=configs/mmae_shapes.py:mae --workdir=/tmp/mae_shapes
    python -m mssl.main --config=configs/mmae_shapes.py:umae,steps=100 --workdir=...

ViT-micro (width 64, 2 blocks), patch 4 on 32 px images (64 patches, 16 visible), a
1-block decoder of width 64, the M-MAE objective (lam = 0.01, mu = 3) or, by the arg, U-MAE
or plain MAE; AdamW (0.9, 0.95); 800 steps of batch 128 (``steps=N`` for another length).
800, not 400: the fine-tune from M-MAE's encoder gains 5.45 points over the same fine-tune
from random initialisation at 800 steps, 4.1 at 400 (seeds 0-2; benchmarks/learning.py's
bar is 5, docs/learning.md). At the end: reconstructions.png, the plots, and MAE's
linear probe (BN head, LARS) and kNN on the CLS features beside a random-init encoder.
Follow with configs/finetune.py:shapes on the workdir.
"""

from configs import common

# The objectives' config.loss on this CPU run: M-MAE's regulariser weight and mu = 3 (the
# official pretrain.sh), U-MAE's weight, none for MAE; the exact gradient (one device).
LOSS = {"mmae": dict(lam=0.01, mu=3.0, center=False), "umae": dict(lam=0.01),
        "mae": dict(lam=0.0)}


def get_config(arg=None):
  words = common.parse_arg(arg, umae=bool, mae=bool, steps=int)
  objective = next((o for o in ("umae", "mae") if o in words), "mmae")
  c = common.masked_image_config(objective, "micro", "runlocal", loss=LOSS[objective])
  c.batch_size = 128
  c.total_steps = words.get("steps", 800)
  c.optimizer.update(dict(base_lr=1.5e-3, warmup_epochs=0.5))
  c.log_every = 25
  c.eval_every = 200
  c.checkpoint_every = 200
  c.data.eval_split = "test[:2000]"
  c.data.knn_split = "train[:5000]"
  c.eval.update(dict(batch_size=500, probe_epochs=30, probe_warmup_epochs=3.0,
                     final=True, compare_random_init=True, num_previews=8))
  return c
