"""The Colab notebooks are in sync with their sources and run top to bottom on a CPU."""

import json
import os
import pathlib
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
COLABS = ROOT / "colabs"
sys.path.insert(0, str(COLABS))
import notebooks  # noqa: E402
from helpers import FAST_COMPILE, load_config  # noqa: E402


def test_notebooks_are_built_from_their_sources():
  assert notebooks.main(["--check"]) == 0
  for name in notebooks.SOURCES:
    nb = json.loads((COLABS / name.replace(".py", ".ipynb")).read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[0] == "markdown" and kinds.count("code") >= 3, (name, kinds)


def run_notebook(name, out, tfds_dir, extra_env=None):
  """Executes the notebook's code cells in order, in a fresh interpreter."""
  code = notebooks.code_of(COLABS / name)
  env = dict(os.environ, PYTHONPATH=str(ROOT), MSSL_REPO=str(ROOT), MSSL_COLAB_SMOKE="1",
             MSSL_COLAB_OUT=str(out), TFDS_DATA_DIR=tfds_dir, MPLBACKEND="Agg",
             XLA_FLAGS=FAST_COMPILE, **(extra_env or {}))
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return done.stdout


def test_matrix_toolkit_notebook(tmp_path, tfds_dir):
  out = run_notebook("matrix_toolkit.ipynb", tmp_path, tfds_dir)
  assert (tmp_path / "spectrum.png").stat().st_size > 1000
  rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("64", "1 ")]
  # Collapse lowers the effective rank: 64 directions versus 1.
  table = {int(r[0]): float(r[1]) for r in rows if len(r) == 5}
  assert table[64] > 50 and table[1] < 2, table
  assert "Taylor logarithm" in out


@pytest.mark.slow(seconds=40)
def test_quickstart_notebook(tmp_path, tfds_dir):
  out = run_notebook("quickstart.ipynb", tmp_path, tfds_dir)
  workdir = tmp_path / "quickstart"
  assert {"loss.png", "spectrum.png"} <= set(os.listdir(workdir))
  assert "loss (first, last)" in out and "effective rank" in out
  assert "pretrained/linear_probe" in out and "random init" in out
  probe = json.loads((tmp_path / "quickstart_probe" / "results.json").read_text())
  assert probe["checkpoint_step"] == 4 and 0.0 <= probe["linear_probe"] <= 1.0


@pytest.mark.slow(seconds=30)
def test_embed_images_notebook(tmp_path, tfds_dir):
  out = run_notebook("embed_images.ipynb", tmp_path, tfds_dir)
  assert len(list((tmp_path / "my_images").glob("*.png"))) == 40
  width = 8 * load_config("quickstart").model.width  # ResNet-18: 8x the stem width
  assert f"features: (40, {width}) float32" in out
  assert "nearest neighbour has the same shape for" in out
