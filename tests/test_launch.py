"""The launch scripts parse and state their assumptions; the local launcher reports a
failing process. (The local launcher training two processes is the README command run by
tests/test_readme.py.)"""

import os
import subprocess
import sys

import pytest

from helpers import ROOT

LAUNCH = ROOT / "launch"


def test_launcher_reports_a_failing_process(tmp_path):
  done = subprocess.run(
      ["bash", str(LAUNCH / "local_multiprocess.sh"), "2", "1", "configs/quickstart.py",
       str(tmp_path / "bad"), "--config.objective=nope"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHON=sys.executable))  # the suite's interpreter, not PATH's
  assert done.returncode != 0
  assert "process 0 failed" in done.stderr
  assert "config.objective='nope'" in (tmp_path / "bad" / "logs" / "process_0.log").read_text()


@pytest.mark.parametrize("script", ["tpu_vm_pod.sh", "slurm_gpu.sbatch",
                                    "local_multiprocess.sh"])
def test_launch_scripts_parse_and_state_their_assumptions(script):
  path = LAUNCH / script
  assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
  head = path.read_text().splitlines()[:25]
  assert any("Assumptions" in line for line in head)
  assert "mssl.main" in path.read_text()
  assert "--config.distributed.initialize=True" in path.read_text()
