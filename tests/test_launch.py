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


# ------------------------------------------------------------ hostile paths ------------
# What a user pastes as a workdir or a flag stays one argument: never split, never run.
HOSTILE_WORKDIR = "runs/my run; touch PWNED_semicolon $(touch PWNED_subst) `touch PWNED_tick`"
HOSTILE_FLAG = "--config.data.dataset=image_folder:/data/it's here $(touch PWNED_flag)"


def _executable(path, text):
  path.write_text(text)
  path.chmod(0o755)


def _stubs(tmp_path):
  """A bin/ folder whose ``python``/``python3`` record their arguments (JSON lines in
  $RECORD) instead of training, with stand-ins for srun, scontrol and gcloud."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  recorder = (f"#!{sys.executable}\nimport json, os, sys\n"
              "with open(os.environ['RECORD'], 'a') as f:\n"
              "  f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}) + '\\n')\n")
  for name in ("python", "python3"):
    _executable(bin_dir / name, recorder)
  # srun OPTIONS... COMMAND ARGS...: runs COMMAND once as task 0 of 2.
  _executable(bin_dir / "srun", "#!/usr/bin/env bash\nwhile [[ $1 == --* ]]; do shift; done\n"
                                "SLURM_NTASKS=2 SLURM_PROCID=0 exec \"$@\"\n")
  # A long node list: a reader that stops after the first line (head) would make it die
  # of SIGPIPE (exit 141 under pipefail; it happened in CI with 2 lines).
  _executable(bin_dir / "scontrol", "#!/usr/bin/env bash\necho node-a\necho node-b\n"
              "for i in $(seq 1 20000); do echo node-c$i; done\n")
  # gcloud ... --command=STRING: runs STRING with bash, as ssh runs it on a worker.
  _executable(bin_dir / "gcloud", "#!/usr/bin/env bash\nfor a in \"$@\"; do\n"
                                  "  [[ $a == --command=* ]] && exec bash -c \"${a#--command=}\"\n"
                                  "done\n")
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path),
             RECORD=str(tmp_path / "calls.jsonl"))
  return env


def _calls(tmp_path):
  import json
  return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def _assert_nothing_ran(tmp_path):
  pwned = [p for root in (tmp_path, ROOT) for p in root.rglob("PWNED*")]
  assert not pwned, pwned


def test_slurm_script_passes_a_hostile_workdir_and_flag_as_they_are(tmp_path):
  env = _stubs(tmp_path)
  env.update(SLURM_JOB_NODELIST="node-[a-b]", SLURM_NNODES="2",
             SLURM_SUBMIT_DIR=str(tmp_path), DATA_DIR="/data/tfds dir", PORT="4321")
  done = subprocess.run(["bash", str(LAUNCH / "slurm_gpu.sbatch"), "configs/quickstart.py",
                         HOSTILE_WORKDIR, HOSTILE_FLAG], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  _assert_nothing_ran(tmp_path)
  (call,) = _calls(tmp_path)
  assert call["argv"][:2] == ["-m", "mssl.main"]
  args = call["argv"][2:]
  for expected in ("--config=configs/quickstart.py", f"--workdir={HOSTILE_WORKDIR}",
                   "--config.data.data_dir=/data/tfds dir", HOSTILE_FLAG,
                   "--config.distributed.initialize=True",
                   "--config.distributed.coordinator_address=node-a:4321",
                   "--config.distributed.num_processes=2",
                   "--config.distributed.process_id=0"):
    assert expected in args, (expected, args)
  assert len(args) == 8, args  # nothing was split into extra words


def test_tpu_script_passes_a_hostile_workdir_and_flag_as_they_are(tmp_path):
  env = _stubs(tmp_path)
  (tmp_path / "mssl").mkdir()  # the clone `setup` leaves in each worker's home
  env.update(DATA_DIR="gs://bucket/tfds dir")
  done = subprocess.run(["bash", str(LAUNCH / "tpu_vm_pod.sh"), "run", "configs/mssl_r50.py",
                         HOSTILE_WORKDIR, HOSTILE_FLAG], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  _assert_nothing_ran(tmp_path)
  (call,) = _calls(tmp_path)
  assert call["cwd"] == str(tmp_path / "mssl")
  assert call["argv"] == ["-m", "mssl.main", "--config=configs/mssl_r50.py",
                          f"--workdir={HOSTILE_WORKDIR}",
                          "--config.data.data_dir=gs://bucket/tfds dir",
                          "--config.distributed.initialize=True", HOSTILE_FLAG]
