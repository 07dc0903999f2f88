"""Helpers shared by the end-to-end tests (configs, small runs, subprocess runs)."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from mssl import export

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def load_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def small(config, tfds_dir, **overrides):
  """A runlocal config made even smaller: 16 px views, tiny eval splits."""
  config.data.data_dir = tfds_dir
  config.data.image_size = 16
  config.data.eval_split = "test[:128]"
  config.data.knn_split = "train[:128]"
  config.eval.batch_size = 64
  config.batch_size = 32
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value
  return config


# The loop under test does not depend on the encoder: a 2-block ViT compiles fast.
FAST_MODEL = ["--config.model.name=vit_micro", "--config.model.patch_size=4"]


def run_main(args, env_extra=None, cwd=ROOT, **kwargs):
  """``python -m mssl.main ARGS`` in ``cwd``. From the repository root the checkout is
  on the path; from elsewhere only the installed package is (as for a user)."""
  env = dict(os.environ, **(env_extra or {}))
  if pathlib.Path(cwd) == ROOT:
    env["PYTHONPATH"] = str(ROOT)
  else:
    env.pop("PYTHONPATH", None)
  return subprocess.run([sys.executable, "-m", "mssl.main", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, **kwargs)


def params_of(workdir, step=None):
  _, _, variables, got_step = export.load_variables(str(workdir), step)
  return jax.device_get(variables), got_step


def assert_trees_close(a, b, **kw):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)
