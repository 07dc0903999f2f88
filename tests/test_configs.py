"""Every config file loads, and its runlocal variant passes validation."""

import pytest

from mssl import validation

from helpers import CONFIGS, load_config

NAMES = sorted(p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "common"))
NEEDS_A_RUN = ("linear_eval", "finetune")  # they point at a pretraining workdir
LANGUAGE = ("mce_lm_arith",)  # no image dataset


def test_every_config_file_is_listed():
  assert {"quickstart", "mssl_r50", "mmae_vitb", "mmae_vitl", "umae_vitb", "mae_vitb",
          "mmae_shapes", "finetune", "linear_eval"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_with_its_documented_command(name):
  config = load_config(name)
  assert config.mode in validation.MODES
  text = (CONFIGS / f"{name}.py").read_text()
  assert f"--config=configs/{name}.py" in text  # the docstring says how to run it


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NEEDS_A_RUN + LANGUAGE])
def test_runlocal_variant_validates(name, tfds_dir):
  config = load_config(name, None if name in ("quickstart", "mmae_shapes") else "runlocal")
  config.data.data_dir = tfds_dir
  assert config.data.dataset.startswith("mssl_shapes")
  validation.validate(config, device_count=1, process_count=1)


def test_language_model_config_words_and_validation():
  """mce_lm_arith: CE + MCE by default, ``ce`` the baseline (w = 0), ``w=`` the weight;
  the default and runlocal variants validate."""
  default, baseline = load_config("mce_lm_arith"), load_config("mce_lm_arith", "ce")
  assert default.loss.w == 1.0 and baseline.loss.w == 0.0
  assert load_config("mce_lm_arith", "w=0.25").loss.w == 0.25
  # The two arms differ in the loss weight alone.
  assert {k: v for k, v in default.items() if k != "loss"} == \
      {k: v for k, v in baseline.items() if k != "loss"}
  assert default.loss.mu == baseline.loss.mu
  with pytest.raises(ValueError, match="'ce' and 'w=...' conflict"):
    load_config("mce_lm_arith", "ce,w=1")
  for arg in (None, "runlocal", "ce,runlocal"):
    validation.validate(load_config("mce_lm_arith", arg), device_count=1, process_count=1)


def test_config_words_are_typed():
  with pytest.raises(ValueError, match="'step=4' is not known; allowed: steps=<int>"):
    load_config("quickstart", "step=4")
  with pytest.raises(ValueError, match="'steps=many': 'many' is not of type int"):
    load_config("quickstart", "steps=many")
  assert load_config("quickstart", "steps=7").total_steps == 7
  grey, colour = load_config("quickstart", "grey,steps=7"), load_config("quickstart")
  assert grey.data.preset == "grey_small" and grey.total_steps == 7
  assert all(v is None for v in grey.data.preset_overrides.values())
  grey.data.preset, grey.data.preset_overrides = colour.data.preset, \
      colour.data.preset_overrides
  grey.total_steps = colour.total_steps
  assert grey.to_dict() == colour.to_dict()  # the views, nothing else
  assert load_config("frossl_r18_cifar", "views=4,runlocal").data.num_views == 4
  with pytest.raises(ValueError, match="steps=5 is the length of the 'shapes' CPU recipe"):
    load_config("simclr_r18_cifar", "steps=5")
  with pytest.raises(ValueError, match="'shapes' is a recipe of its own"):
    load_config("simclr_r18_cifar", "shapes,runlocal")


TWO_VIEW = [n for n in NAMES if n.endswith("_r18_cifar")]


@pytest.mark.parametrize("name", TWO_VIEW)
def test_shapes_recipe_is_the_quickstarts_encoder_and_budget(name, tfds_dir):
  """Every two-view config's CPU recipe (benchmarks/learning.py runs them): the
  quickstart's data, encoder, batch, length and evaluation, the objective's own loss and
  head structure (its loss values and optimiser may be its own CPU choice, e.g. MEC's
  warm-up, spectral contrastive's mu); and it validates."""
  quick, config = load_config("quickstart"), load_config(name, "shapes")
  own = load_config(name)
  assert config.objective == own.objective and set(config.loss) == set(own.loss)
  for key in ("data.dataset", "data.image_size", "data.eval_split", "data.knn_split",
              "data.preset_overrides.crop_scale", "data.preset_overrides.hue",
              "model.name", "model.width", "model.stem", "batch_size", "total_steps",
              "eval.final", "eval.compare_random_init", "eval.compare_pixels"):
    want, got = quick, config
    for part in key.split("."):
      want, got = want[part], got[part]
    assert got == want, key
  assert len(config.projector.hidden) == 1 and config.projector.out == 256
  assert config.projector.last_bn == own.projector.last_bn
  assert (config.predictor is None) == (own.predictor is None)
  assert load_config(name, "shapes,steps=300").total_steps == 300
  config.data.data_dir = tfds_dir
  validation.validate(config, device_count=1, process_count=1)


@pytest.mark.parametrize("name", ["frossl_r18_cifar", "byol_r18_cifar", "vicreg_r18_cifar",
                                  "barlow_twins_r18_cifar", "simclr_r18_cifar"])
def test_lars_recipes_run_lars_as_their_source_does(name):
  """FroSSL's official frossl.yaml and solo-learn's byol / vicreg / barlow / simclr.yaml:
  LARS at eta 0.02 with the rate clipped (docs/methods.md), in the CIFAR recipe and the
  CPU one."""
  for arg in (None, "shapes"):
    o = load_config(name, arg).optimizer
    assert (o.name, o.trust_coefficient, o.clip_lr) == ("lars", 0.02, True), (name, arg)


def test_the_quickstart_is_matrix_ssls_shapes_recipe():
  """configs/quickstart.py states Matrix-SSL's recipe itself (a config reads alone); this
  keeps it what it says it is."""
  assert load_config("quickstart").to_dict() == \
      load_config("matrix_ssl_r18_cifar", "shapes").to_dict()
  assert load_config("quickstart", "steps=500").to_dict() == \
      load_config("matrix_ssl_r18_cifar", "shapes,steps=500").to_dict()


def sibling_imports(folder=CONFIGS) -> list[str]:
  """``file: module`` for each config that imports another config file (only
  ``configs.common``, the shared defaults, may be imported)."""
  import ast
  found = []
  for path in sorted(folder.glob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      names = []
      if isinstance(node, ast.ImportFrom) and node.module == "configs":
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("configs."):
        names = [node.module.split(".", 1)[1]]
      elif isinstance(node, ast.Import):
        names = [a.name.split(".", 1)[1] for a in node.names
                 if a.name.startswith("configs.")]
      found += [f"{path.name}: {n}" for n in names if n != "common"]
  return found


def test_no_config_imports_another(tmp_path):
  assert sibling_imports() == []
  (tmp_path / "a.py").write_text("from configs import common, mssl_r50\n"
                                 "import configs.quickstart\n")
  assert sibling_imports(tmp_path) == ["a.py: mssl_r50", "a.py: quickstart"]


@pytest.mark.parametrize("name,arg", [("linear_eval", None), ("finetune", None),
                                      ("finetune", "shapes")])
def test_downstream_configs_carry_no_pretraining_fields(name, arg):
  """A linear-eval or fine-tune run reads the objective, loss, heads and teacher of the
  pretraining run from its workdir; its own config has none to mislead a reader."""
  import sys
  sys.path.insert(0, str(CONFIGS.parent))
  from configs import common
  config = load_config(name, arg)
  assert not set(common.PRETRAINING_FIELDS) & set(config.keys())
  assert "predictor_lr" not in config.optimizer
  assert config.mode == name and "pretrained_workdir" in config
