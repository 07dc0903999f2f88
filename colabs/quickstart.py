# %% [markdown]
# # Quickstart: pretrain Matrix-SSL on the embedded dataset, look at it, probe it
#
# Runs on a CPU (about 10 minutes; a GPU/TPU runtime is faster). In Colab, first clone the
# repository and run `!pip install -q -e <repo>`; this notebook then imports `mssl` and the
# config files from the clone (set `REPO` below if it is not the working directory).
# Outputs go to `$MSSL_COLAB_OUT` (default `/tmp/mssl_colabs`). `MSSL_COLAB_SMOKE=1`
# shrinks every step to a few seconds (what the tests run).

# %%
import json
import os
import sys

REPO = os.environ.get("MSSL_REPO", os.getcwd())
sys.path.insert(0, REPO)  # for `configs`
OUT = os.environ.get("MSSL_COLAB_OUT", "/tmp/mssl_colabs")
SMOKE = os.environ.get("MSSL_COLAB_SMOKE") == "1"
WORKDIR = os.path.join(OUT, "quickstart")

from configs import linear_eval, quickstart
from mssl import run, writers

# %% [markdown]
# ## 1. Pretrain
# `configs/quickstart.py`: a narrow ResNet-18 (CIFAR stem, width 8) trained with the
# Matrix-SSL objective on 16 px views of `mssl_shapes/32`, 2000 steps of batch 128 (about
# 9 minutes on a 2-core CPU, faster on a Colab GPU). It prints the linear-probe and kNN
# accuracy of the pretrained encoder beside the same encoder at random initialisation and
# the raw pixels (over three seeds on a 2-core CPU: 38.5% / 37.6% against 17.4% / 19.8%
# at random initialisation; the digits depend on the machine). Running the cell again
# resumes from the workdir's checkpoint (and returns its results at once when training
# is done).

# %%
config = quickstart.get_config("steps=4" if SMOKE else None)
if SMOKE:  # a few seconds: tiny eval splits and probe
  config.data.eval_split, config.data.knn_split = "test[:256]", "train[:256]"
  config.eval.probe_epochs, config.eval.batch_size = 2, 128
  config.batch_size, config.log_every = 64, 2
  config.eval.embedding_plot = "pca"  # t-SNE of the eval points takes longer than this
results = run.train_and_evaluate(config, WORKDIR)
print({k: round(v, 4) for k, v in results.items() if isinstance(v, float)})

# %% [markdown]
# ## 2. The loss, the effective rank and the spectrum
# `metrics.jsonl` holds every logged scalar; the trainer also wrote PNG plots.

# %%
records = writers.read_jsonl(os.path.join(WORKDIR, "metrics.jsonl"))
losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
ranks = [(r["step"], r["eval/effective_rank_projection"]) for r in records
         if "eval/effective_rank_projection" in r]
print("loss (first, last):", losses[0], losses[-1])
print("effective rank of the projections over training:", ranks)
plots = sorted(f for f in os.listdir(WORKDIR) if f.endswith(".png"))
print("plots:", plots)
try:  # inline in a notebook
  from IPython.display import Image, display
  for name in plots:
    display(Image(filename=os.path.join(WORKDIR, name)))
except ImportError:
  pass

# %% [markdown]
# ## 3. Linear probe from the checkpoint
# `configs/linear_eval.py` reloads the encoder from the workdir, freezes it and trains a
# linear classifier on its features (plus a kNN classifier).

# %%
probe_config = linear_eval.get_config()
probe_config.pretrained_workdir = WORKDIR
if SMOKE:
  probe_config.eval.probe_epochs = 2
probe = run.train_and_evaluate(probe_config, os.path.join(OUT, "quickstart_probe"))
print(json.dumps(probe, indent=1))
