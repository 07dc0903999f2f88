# %% [markdown]
# # Embedding a folder of images with a pretrained encoder
#
# Loads the encoder from a pretraining workdir (`mssl.export.load_encoder`), embeds every
# image of a folder and finds each image's nearest neighbours. Without a workdir of your
# own, the notebook pretrains a small one first (1-2 minutes on a CPU), and writes a folder
# of images from the embedded dataset to embed. Set `WORKDIR` and `FOLDER` to use yours.
# In Colab, first run `!pip install -q -e <repo>` from a clone of the repository.

# %%
import os

import numpy as np
from PIL import Image

from mssl import export

OUT = os.environ.get("MSSL_COLAB_OUT", "/tmp/mssl_colabs")
SMOKE = os.environ.get("MSSL_COLAB_SMOKE") == "1"
WORKDIR = os.environ.get("MSSL_WORKDIR", os.path.join(OUT, "embed_demo_run"))
FOLDER = os.path.join(OUT, "my_images")

# %% [markdown]
# ## A workdir to load (skipped when `WORKDIR` already holds checkpoints)

# %%
if not os.path.isdir(os.path.join(WORKDIR, "checkpoints")):
  import sys
  sys.path.insert(0, os.environ.get("MSSL_REPO", os.getcwd()))
  from configs import quickstart
  from mssl import run
  config = quickstart.get_config("steps=4" if SMOKE else "steps=300")
  config.eval.final = False
  config.data.eval_split, config.data.knn_split = "test[:256]", "train[:256]"
  config.eval.batch_size = 128
  if SMOKE:
    config.batch_size, config.log_every = 64, 2
  run.train_and_evaluate(config, WORKDIR)

# %% [markdown]
# ## A folder of images (PNG files; any size, RGB)

# %%
from mssl.data import shapes

images, labels = shapes.generate(40, size=32, seed=7)
os.makedirs(FOLDER, exist_ok=True)
for i, (image, label) in enumerate(zip(images, labels)):
  Image.fromarray(image).save(os.path.join(FOLDER, f"{i:03d}_{shapes.CLASSES[label]}.png"))
print(len(os.listdir(FOLDER)), "images in", FOLDER)

# %% [markdown]
# ## Embed them
# `embed(images)` takes float32 images in [0, 1], shape (N, H, W, 3), at the size the
# encoder was trained on, and returns pooled encoder features (no projector).

# %%
embed = export.load_encoder(WORKDIR)
size = embed.config.data.image_size
files = sorted(f for f in os.listdir(FOLDER) if f.endswith(".png"))
batch = np.stack([np.asarray(Image.open(os.path.join(FOLDER, f)).convert("RGB")
                             .resize((size, size), Image.BICUBIC), np.float32) / 255.0
                  for f in files])
features = embed(batch)
print("features:", features.shape, features.dtype)

# %% [markdown]
# ## Nearest neighbours by cosine similarity

# %%
normed = features / np.linalg.norm(features, axis=1, keepdims=True)
similarity = normed @ normed.T
np.fill_diagonal(similarity, -np.inf)
same = 0
for i, name in enumerate(files[:8]):
  j = int(np.argmax(similarity[i]))
  print(f"{name:>18} -> {files[j]:>18}  (cosine {similarity[i, j]:.3f})")
for i in range(len(files)):
  same += files[i].split("_", 1)[1] == files[int(np.argmax(similarity[i]))].split("_", 1)[1]
print(f"nearest neighbour has the same shape for {same} of {len(files)} images")
