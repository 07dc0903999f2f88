"""Every README command marked ``<!-- readme-test: cpu -->`` runs (at smoke size)."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from helpers import FAST_COMPILE, FAST_MODEL, ROOT
from mssl import writers

MARK = "<!-- readme-test: cpu -->"
# Appended to each command so that it finishes in seconds; the command itself (config,
# arguments, workdir layout) is the README's.
PRETRAIN_SMOKE = ["--config.total_steps=2", "--config.batch_size=16", "--config.log_every=1",
                  "--config.eval_every=2", "--config.checkpoint_every=2",
                  "--config.eval.batch_size=32", "--config.data.eval_split=test[:64]",
                  "--config.data.knn_split=train[:64]", "--config.eval.probe_epochs=1",
                  "--config.data.image_size=16", "--config.data.train_split=train[:512]",
                  "--config.eval.embedding_plot=pca",  # t-SNE is test_plots.py's
                  # The commands are under test, not the network: a 2-block ViT compiles
                  # in a fraction of the ResNet's time (the quickstart's ResNet learns in
                  # tests/trainers/test_pretraining.py, its notebook runs in test_colabs.py).
                  *FAST_MODEL]
SMOKE = {
    "linear_eval": ["--config.eval.probe_epochs=1", "--config.eval.batch_size=32",
                    "--config.data.eval_split=test[:64]",
                    "--config.data.knn_split=train[:64]"],
    "finetune": ["--config.total_steps=2", "--config.batch_size=16", "--config.log_every=1",
                 "--config.eval_every=2", "--config.checkpoint_every=2",
                 "--config.eval.batch_size=32", "--config.data.eval_split=test[:64]"],
}


def marked_commands(text: str) -> list[str]:
  """Shell commands of the code blocks that follow the marker, in README order."""
  commands = []
  for match in re.finditer(re.escape(MARK) + r"\s*```bash\n(.*?)```", text, re.S):
    block = re.sub(r"\\\n\s*", " ", match.group(1))
    for line in block.splitlines():
      for part in line.split("&&"):
        part = part.strip()
        if part and not part.startswith("#") and "pip install" not in part:
          commands.append(part)
  return commands


def smoke(command: str, tmp: str) -> list[str]:
  argv = shlex.split(command.replace("/tmp/", tmp + "/"))
  config = re.search(r"--config=configs/(\w+)\.py", command)
  if "mssl.main" in command or argv[0].startswith("launch/"):
    argv += SMOKE.get(config.group(1) if config else "", PRETRAIN_SMOKE)
  if argv[0] == "python":
    argv[0] = sys.executable
  return argv


def test_readme_marks_the_cpu_commands():
  commands = marked_commands((ROOT / "README.md").read_text())
  text = " ".join(commands)
  for expected in ("configs/quickstart.py", "colabs/matrix_toolkit.py",
                   "configs/linear_eval.py", "configs/mmae_shapes.py",
                   "configs/finetune.py:shapes", "launch/local_multiprocess.sh"):
    assert expected in text, expected


# The marked commands in groups that run on their own (a group's later command reads what
# an earlier one wrote), so that pytest-xdist can run the groups side by side.
GROUPS = {
    "quickstart": ("configs/quickstart.py", "configs/linear_eval.py"),
    "toolkit": ("colabs/matrix_toolkit.py",),
    "vicreg": ("configs/vicreg_r18_cifar.py:runlocal --workdir",),
    "masked_image": ("configs/mmae_shapes.py", "configs/finetune.py:shapes"),
    "multiprocess": ("launch/local_multiprocess.sh",),
}


def test_every_marked_command_is_in_a_group():
  commands = marked_commands((ROOT / "README.md").read_text())
  grouped = [c for c in commands if any(k in c for keys in GROUPS.values() for k in keys)]
  assert grouped == commands


# Each group's measured seconds (2-core Xeon, full suite), so the longest start first.
GROUP_SECONDS = {"multiprocess": 53, "masked_image": 43, "quickstart": 35, "vicreg": 24,
                 "toolkit": 6}


@pytest.mark.parametrize("group", [
    pytest.param(g, marks=pytest.mark.slow(seconds=GROUP_SECONDS[g])) for g in sorted(GROUPS)])
def test_readme_cpu_commands_run(group, tmp_path, tfds_dir):
  env = dict(os.environ, PYTHONPATH=str(ROOT), TFDS_DATA_DIR=tfds_dir, XLA_FLAGS=FAST_COMPILE,
             MPLBACKEND="Agg", MSSL_COLAB_OUT=str(tmp_path / "colab"),
             PYTHON=sys.executable)
  commands = [c for c in marked_commands((ROOT / "README.md").read_text())
              if any(key in c for key in GROUPS[group])]
  assert commands, group
  for command in commands:
    argv = smoke(command, str(tmp_path))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
  # What the commands leave behind, where the README says.
  if group == "quickstart":
    assert (tmp_path / "mssl_quickstart" / "results.json").exists()
    assert (tmp_path / "eval" / "results.json").exists()
  if group == "vicreg":
    assert (tmp_path / "vicreg_local" / "checkpoints").is_dir()
  if group == "masked_image":
    assert (tmp_path / "mmae_shapes" / "reconstructions.png").exists()
    assert (tmp_path / "mmae_shapes_ft" / "results.json").exists()
  if group == "multiprocess":
    # The two-process launcher: both processes ran, only process 0 wrote the metrics.
    mp_run = tmp_path / "mp_run"
    assert "process 1 of 2, 2 local / 4 global devices" in \
        (mp_run / "logs" / "process_1.log").read_text()
    steps = [r["step"] for r in writers.read_jsonl(str(mp_run / "metrics.jsonl"))
             if "loss" in r]
    assert steps == [1, 2]
    assert (mp_run / "checkpoints" / "2").is_dir()
