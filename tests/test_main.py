"""The command line: config words and fields are checked against the config file before
anything is built, every field a user may need is settable, and a config file runs from
any working directory."""

import pytest

from mssl import main as entry
from mssl import validation

from helpers import CONFIGS, ROOT, load_config, run_main


def prepared(config_name, *args, arg=None):
  """The config ``python -m mssl.main`` runs for ``args`` (before validation)."""
  command = entry.parse_command_line(["prog", "--config=X", "--workdir=W", *args])
  return entry.apply_overrides(load_config(config_name, arg), command.overrides)


def test_unknown_config_word_and_field_fail_before_anything_is_built(tmp_path):
  out = run_main([f"--config={CONFIGS}/simclr_r18_cifar.py:cifar100x",
                  f"--workdir={tmp_path}/w"], cwd=tmp_path)  # from another directory
  assert out.returncode == 2
  assert ("config argument 'cifar100x' is not known; allowed: cifar10, cifar100, stl10, "
          "runlocal, shapes, steps=<int>.") in out.stderr
  out = run_main([f"--config={CONFIGS}/simclr_r18_cifar.py:runlocal",
                  f"--workdir={tmp_path}/w", "--config.loss.temprature=0.2"], cwd=tmp_path)
  assert out.returncode == 2
  assert ("--config.loss.temprature: config.loss has no field 'temprature'; its fields: "
          "temperature.") in out.stderr
  assert "Traceback" not in out.stderr
  assert not (tmp_path / "w").exists()


def test_an_error_in_a_config_file_names_its_line(tmp_path):
  """A NameError in a config file used to be reported without its line."""
  (tmp_path / "mine.py").write_text(
      "from configs import common\n\n\ndef get_config(arg=None):\n"
      "  c = common.get_config()\n  c.total_steps = undefined_name\n  return c\n")
  (tmp_path / "configs").symlink_to(CONFIGS)  # its siblings, as in a copy of configs/
  out = run_main([f"--config={tmp_path}/mine.py", f"--workdir={tmp_path}/w"], cwd=tmp_path)
  assert out.returncode == 2
  assert ("FATAL: NameError: name 'undefined_name' is not defined (mine.py, line 6: "
          "c.total_steps = undefined_name)") in out.stderr, out.stderr
  assert "Traceback" not in out.stderr


def test_config_file_runs_from_any_directory(tmp_path):
  # Loads (imports configs.common from the file's own folder) and reaches validation.
  out = run_main([f"--config={CONFIGS}/quickstart.py", f"--workdir={tmp_path}/w",
                  "--config.loss.mu=-1.0"], cwd=tmp_path)
  assert out.returncode == 1
  assert "config.loss.mu=-1.0 is not allowed for objective 'matrix_ssl'" in out.stderr
  assert "ModuleNotFoundError" not in out.stderr and "Traceback" not in out.stderr


def test_readme_advice_fields_are_settable():
  config = prepared("quickstart", "--config.loss.logm=exact",
                    "--config.data.preset_overrides.hue=0.25", "--config.predictor=None")
  assert config.loss.logm == "exact" and config.predictor is None
  assert config.data.preset_overrides.hue == 0.25
  assert config.data.preset_overrides.grayscale == 0.8  # the quickstart's own value kept
  assert config.data.preset_overrides.solarize is None   # unset: the preset's value
  validation.validate(config, device_count=1, process_count=1)
  with pytest.raises(entry.CommandLineError, match="config.eval has no field 'nope'"):
    prepared("quickstart", "--config.eval.nope=None")


def test_switching_objective_brings_its_defaults():
  """The loss block becomes the new objective's; its teacher and schedules come from its
  registry entry, so nothing else in the config has to change with it."""
  config = prepared("quickstart", "--config.objective=simclr",
                    "--config.loss.temperature=0.3")
  assert dict(config.loss) == {"temperature": 0.3} and "teacher" not in config
  validation.validate(config, device_count=1, process_count=1)
  config = prepared("quickstart", "--config.objective=vicreg")
  assert dict(config.loss) == dict(sim_weight=25.0, var_weight=25.0, cov_weight=1.0)
  config = prepared("simclr_r18_cifar", "--config.objective=mec", arg="runlocal")
  assert dict(config.loss) == dict(order=4, side="auto", eps2=64.0, warmup_epochs=10.0,
                                   start_factor=8.0)  # lam_inv: None -> its schedule
  validation.validate(config, device_count=1, process_count=1)
  with pytest.raises(entry.CommandLineError, match="objective 'vicreg' does not take "
                     "temperature; allowed: cov_weight, sim_weight, var_weight"):
    prepared("quickstart", "--config.objective=vicreg", "--config.loss.temperature=0.3")


def test_every_config_field_the_readme_mentions_is_settable():
  """Each ``--config.FIELD=VALUE`` of the README (commands and advice) names a field of
  the config it is used with: the config file named on the same line, else the
  quickstart's (placeholders such as FIELD, KEY and NAME are the syntax, not fields)."""
  import re
  text = re.sub(r"\\\n\s*", " ", (ROOT / "README.md").read_text())  # join "\" lines
  checked = 0
  for line in text.splitlines():
    named = re.search(r"configs/(\w+)\.py", line)
    for field, value in re.findall(r"--config\.([A-Za-z_.]+)=([^\s`']*)", line):
      if field.isupper() or field.split(".")[-1].isupper():
        continue
      name = named.group(1) if named else (
          "linear_eval" if field == "pretrained_workdir" else
          "finetune" if field.startswith("finetune.") else "quickstart")
      config = load_config(name)
      if field == "objective":
        continue  # switching is covered above
      entry._lookup(config, field)  # raises KeyError naming the missing part
      checked += 1
  assert checked >= 12


def test_bad_config_fails_before_training_from_the_command_line(tmp_path):
  out = run_main(["--config=configs/simclr_r18_cifar.py:runlocal", f"--workdir={tmp_path}/w",
                  "--config.objective=nope"])
  assert out.returncode != 0
  assert "config.objective='nope' is not a registered objective" in out.stderr
  assert not (tmp_path / "w").exists()


# ------------------------------------------------------------ the pure parser ----------
def test_the_command_line_parses_without_reading_anything():
  command = entry.parse_command_line([
      "prog", "--config", "configs/quickstart.py:steps=5", "--workdir=/tmp/w x",
      "--config.loss.mu=0.5", "--alsologtostderr", "--config.predictor=None"])
  assert command == entry.CommandLine(
      "configs/quickstart.py:steps=5", "/tmp/w x",
      (("loss.mu", "0.5"), ("predictor", "None")), ("--alsologtostderr",))
  for argv, message in ((["prog", "--config=a.py"], "--workdir must be given"),
                        (["prog", "--workdir=w"], "--config must be given"),
                        (["prog", "--config=a.py", "--workdir=w", "extra"],
                         "unexpected argument 'extra'"),
                        (["prog", "--config=a.py", "--workdir=w", "--config.seed"],
                         "--config.seed: a config field is set as --config.FIELD=VALUE")):
    with pytest.raises(entry.CommandLineError, match=message):
      entry.parse_command_line(argv)


def test_values_take_the_type_of_their_field():
  config = prepared("quickstart", "--config.data.dataset=123", "--config.data.download=false",
                    "--config.projector.hidden=[32, 16]", "--config.seed=3",
                    "--config.optimizer.base_lr=1", "--config.data.data_dir=/data/2024",
                    "--config.init_from=None")
  assert config.data.dataset == "123"                  # a string field keeps the text
  assert config.data.download is False                 # a bool field: true / false
  assert config.projector.hidden == (32, 16)           # a tuple field: a list literal
  assert config.seed == 3 and config.optimizer.base_lr == 1.0
  assert config.data.data_dir == "/data/2024"          # a typed None field: its type
  assert config.is_locked
  base = load_config("quickstart")
  assert prepared("quickstart").to_dict() == base.to_dict()  # no override: the file's
  with pytest.raises(entry.CommandLineError, match=r"--config.seed='x' does not fit "
                     r"config.seed"):
    prepared("quickstart", "--config.seed=x")
  with pytest.raises(entry.CommandLineError, match="config.data.download is True or False"):
    prepared("quickstart", "--config.data.download=maybe")
