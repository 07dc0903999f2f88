"""Every config file loads, and its runlocal variant passes validation."""

import pytest

from mssl import validation

from helpers import CONFIGS, load_config

NAMES = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "common"))
NEEDS_A_RUN = ("linear_eval", "finetune")  # they point at a pretraining workdir


def test_every_config_file_is_listed():
  assert {"quickstart", "mssl_r50", "mmae_vitb", "mmae_vitl", "umae_vitb", "mae_vitb",
          "mmae_shapes", "finetune", "linear_eval"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_with_its_documented_command(name):
  config = load_config(name)
  assert config.mode in validation.MODES
  text = (CONFIGS / f"{name}.py").read_text()
  assert f"--config=configs/{name}.py" in text  # the docstring says how to run it


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NEEDS_A_RUN])
def test_runlocal_variant_validates(name, tfds_dir):
  config = load_config(name, None if name in ("quickstart", "mmae_shapes") else "runlocal")
  config.data.data_dir = tfds_dir
  assert config.data.dataset.startswith("mssl_shapes")
  validation.validate(config, device_count=1, process_count=1)


def test_config_words_are_typed():
  with pytest.raises(ValueError, match="'step=4' is not known; allowed: steps=<int>"):
    load_config("quickstart", "step=4")
  with pytest.raises(ValueError, match="'steps=many': 'many' is not of type int"):
    load_config("quickstart", "steps=many")
  assert load_config("quickstart", "steps=7").total_steps == 7
  assert load_config("frossl_r18_cifar", "views=4,runlocal").data.num_views == 4
