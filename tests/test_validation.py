"""The validation pass rejects, before anything is built, what used to fail late or train
silently: loss keys an objective does not take, values outside their domain, lengths and
sizes that cannot run. Each message names the field, the value and what is allowed."""

import pytest

from mssl import losses, run, validation

from helpers import load_config, masked_config, set_fields, small, write_image_folder


def problems(name="quickstart", arg=None, **overrides):
  config = load_config(name, arg)
  set_fields(config, overrides)
  with pytest.raises(validation.ConfigError) as info:
    validation.validate(config, device_count=1, process_count=1)
  return str(info.value)


def test_every_registered_objective_lists_its_keywords_from_its_signature():
  assert losses.loss_keywords("vicreg") == dict(sim_weight=25.0, var_weight=25.0,
                                                cov_weight=1.0)
  assert set(losses.loss_keywords("matrix_ssl")) == {"lam", "mu", "gamma", "order", "logm",
                                                      "side"}
  # A masked-image regulariser also takes masked_image_objective's keywords (lam).
  assert {"lam", "mu", "center"} <= set(losses.loss_keywords("mmae"))
  assert "regularizer" not in losses.loss_keywords("umae")
  for name in losses.names():  # every shared keyword name has a domain, or is a choice
    for key in losses.loss_keywords(name):
      assert key in losses.DOMAINS or key in ("logm", "kernel", "side"), (name, key)


def test_switching_objective_without_its_loss_keys_fails_naming_them():
  message = problems(objective="vicreg")
  assert ("config.loss has gamma, lam, logm, mu, order, side, which objective 'vicreg' "
          "does not take; allowed: cov_weight, sim_weight, var_weight.") in message
  message = problems("simclr_r18_cifar", "runlocal", **{"loss.temprature": 0.2})
  assert "config.loss has temprature" in message and "allowed: temperature" in message


@pytest.mark.parametrize("key,value,allowed", [
    ("loss.mu", -1.0, "a number > 0"),
    ("loss.lam", -0.5, "a number >= 0"),
    ("loss.order", 0, "an integer >= 1"),
    ("loss.gamma", -1.0, "a number >= 0"),
])
def test_objective_values_outside_their_domain(key, value, allowed):
  message = problems(**{key: value})
  assert (f"config.{key}={value!r} is not allowed for objective 'matrix_ssl'; "
          f"allowed: {allowed}.") in message


def test_values_the_objective_itself_rejects_fail_in_validation():
  message = problems(**{"loss.logm": "cholesky"})
  assert "rejected by objective 'matrix_ssl'" in message and "cholesky" in message
  assert "taylor" in message  # the objective's own message lists the choices
  message = problems("simclr_r18_cifar", "runlocal", **{"loss.temperature": 0.0})
  assert "config.loss.temperature=0.0" in message


def test_masked_image_values():
  assert "config.loss.mu=0.0 is not allowed for objective 'mmae'" in problems(
      "mmae_shapes", **{"loss.mu": 0.0})
  assert "config.loss.lam=-1.0 is not allowed" in problems("mmae_shapes",
                                                            **{"loss.lam": -1.0})
  assert "config.model.attention='flash' is not allowed; allowed: auto, xla, cudnn" in \
      problems("mmae_shapes", **{"model.attention": "flash"})
  message = problems("mmae_shapes", **{"data.image_size": 30})
  assert ("config.data.image_size=30 must be a positive multiple of "
          "config.model.patch_size=4") in message


def test_clip_lr_is_a_bool_for_lars_only():
  message = problems(**{"optimizer.clip_lr": True})    # the quickstart runs SGD
  assert ("config.optimizer.clip_lr=True is not allowed with config.optimizer.name='sgd'; "
          "allowed: True with lars only") in message
  config = load_config("simclr_r18_cifar", "runlocal")   # LARS
  set_fields(config, {"optimizer.clip_lr": True})
  validation.validate(config, device_count=1, process_count=1)


def test_lengths_sizes_and_checkpoints():
  message = problems(total_steps=0, keep_checkpoints=0, **{"data.image_size": 0})
  assert "config.total_steps=0 is not allowed; allowed: a positive number of steps, or -1" \
      in message
  assert "config.keep_checkpoints=0 is not allowed; allowed: an integer >= 1" in message
  assert "config.data.image_size=0 must be a positive number of pixels" in message
  assert "config.num_epochs=0.0 must be positive" in problems(total_steps=-1,
                                                              num_epochs=0.0)


def test_unknown_tfds_name_is_reported_as_unknown_with_close_matches():
  message = problems(**{"data.dataset": "cifar11"})
  assert "config.data.dataset='cifar11': unknown tfds dataset 'cifar11'" in message
  assert "cifar10" in message and "not prepared" not in message


def test_config_validation_errors(tfds_dir, tmp_path):
  def problems(**overrides):
    config = small(load_config("matrix_ssl_r18_cifar", "runlocal"), tfds_dir, **overrides)
    with pytest.raises(validation.ConfigError) as info:
      validation.validate(config, device_count=8, process_count=1)
    return str(info.value)
  assert "config.objective='simclr2' is not a registered objective; allowed:" in \
      problems(objective="simclr2")
  message = problems(batch_size=36)
  assert "config.batch_size=36" in message and "number of devices (8)" in message
  message = problems(objective="frossl", **{"data.num_views": 1})
  assert "config.data.num_views=1" in message and "at least 2" in message
  assert "config.data.data_dir='/nonexistent/dir' does not exist" in \
      problems(**{"data.data_dir": "/nonexistent/dir"})
  assert "config.model.name='resnet34'" in problems(**{"model.name": "resnet34"})
  assert "gradient accumulation is not supported" in problems(grad_accum_steps=4)
  message = problems(**{"data.dataset": "cifar10", "data.data_dir": str(tmp_path)})
  assert "'cifar10' is not prepared" in message and "tfds build cifar10" in message
  # Several problems are reported together, before anything is built.
  message = problems(objective="simclr2", batch_size=36)
  assert "objective" in message and "batch_size" in message
  with pytest.raises(validation.ConfigError):
    run.train_and_evaluate(small(load_config("mec_r18_cifar", "runlocal"), tfds_dir,
                                   **{"optimizer.name": "rmsprop"}), str(tmp_path / "x"))
  assert not (tmp_path / "x").exists()  # nothing was written


def test_masked_image_config_validation(tfds_dir):
  c = masked_config("mmae", tfds_dir, 2)
  c.model.name = "resnet18"
  c.data.num_views = 2
  c.loss.gamma = 1.0
  c.mae.mask_ratio = 1.0
  with pytest.raises(validation.ConfigError) as info:
    validation.validate(c)
  message = str(info.value)
  for expected in ("config.model.name='resnet18'", "needs a ViT",
                   "config.data.num_views=2",
                   "config.loss has gamma, which objective 'mmae' does not take; allowed: "
                   "center, lam, mu, reference_world_size.",
                   "config.mae.mask_ratio=1.0"):
    assert expected in message, message


PAIR = "a pair (min, max) with 0 < min <= max"


# Values that used to train to exit 0 with wrong numbers (kNN 9.6% with k=0, an untrained
# probe reported at 9.57%, lr 4.7e-7 from a warm-up of -1) or die deep inside TensorFlow
# (shuffle buffer 0), the model (width 0: ZeroDivisionError) or the crop (a scalar scale).
@pytest.mark.parametrize("key,value,allowed", [
    ("eval.knn_k", 0, "an integer >= 1"),
    ("eval.probe_epochs", 0, "an integer >= 1"),
    ("optimizer.warmup_epochs", -1.0, ">= 0 epochs"),
    ("eval.probe_warmup_epochs", -0.5, ">= 0 epochs"),
    ("data.shuffle_buffer", 0, "an integer >= 1"),
    ("data.eval_crop_fraction", 0.0, "(0, 1]"),
    ("data.eval_crop_fraction", 1.5, "(0, 1]"),
    ("model.width", 0, "an integer >= 1"),
    ("data.preset_overrides.crop_scale", (0.5,), f"{PAIR} <= 1"),
    ("data.preset_overrides.crop_scale", (0.5, 1.2), f"{PAIR} <= 1"),
    ("data.preset_overrides.crop_ratio", (2.0, 1.0), f"{PAIR}."),
    ("eval.embedding_plot", "mds", "auto, umap, tsne, pca, none."),
    ("eval.embedding_points", 2, "an integer >= 3."),
])
def test_fields_outside_their_domain_fail_naming_value_and_domain(key, value, allowed):
  message = problems(**{key: value})
  assert f"config.{key}={value!r} is not allowed; allowed: {allowed}" in message, message
  assert message.count("\n  - ") == 1, message  # only this field


def test_the_default_domains_accept_every_config():
  """The new domain checks reject none of the shipped recipes (their runlocal variants
  are validated in full by tests/test_configs.py)."""
  for name in ("quickstart", "mssl_r50", "mmae_shapes", "vicreg_r18_cifar", "mae_vitb"):
    config = load_config(name)
    problems = []
    validation._check_domains(config, lambda ok, message: ok or problems.append(message))
    assert problems == [], (name, problems)


def test_finetune_init_is_pretrained_or_random():
  message = problems("finetune", "shapes", pretrained_workdir="/nonexistent",
                     **{"finetune.init": "scratch"})
  assert ("config.finetune.init='scratch' must be 'pretrained' (the encoder of "
          "pretrained_workdir) or 'random'") in message, message


# ------------------------------------------------------------ downstream modes --------
def _downstream(mode, pre_workdir, **overrides):
  config = load_config("linear_eval" if mode == "linear_eval" else "finetune",
                       None if mode == "linear_eval" else "shapes")
  config.pretrained_workdir = str(pre_workdir)
  set_fields(config, overrides)
  with pytest.raises(validation.ConfigError) as info:
    validation.validate(config, device_count=1, process_count=1)
  return str(info.value)


def _saved(tmp_path, name="pre", config_name="mmae_shapes", arg=None, **fields):
  from mssl import loop
  config = load_config(config_name, arg)
  set_fields(config, fields)
  (tmp_path / name).mkdir()
  loop.save_config(config, str(tmp_path / name), {"num_classes": 10})
  return tmp_path / name


def test_downstream_modes_check_the_pretraining_workdir_before_building(tmp_path, tfds_dir):
  """What used to surface as a TypeError or a raw traceback after 6-17 s (issue 28)."""
  vit = _saved(tmp_path, "vit", **{"data.data_dir": tfds_dir})
  resnet = _saved(tmp_path, "resnet", "quickstart", **{"data.data_dir": tfds_dir})
  ft = _saved(tmp_path, "ft", "finetune", "shapes", pretrained_workdir=str(vit))
  message = _downstream("linear_eval", ft)
  assert (f"config.pretrained_workdir={str(ft)!r} is the workdir of a 'finetune' run; "
          "config.mode='linear_eval' needs a pretraining run's workdir (mode='pretrain'), "
          f"e.g. the one that run started from: {str(vit)!r}.") in message, message
  message = _downstream("finetune", resnet)
  assert "holds a 'resnet18' encoder; fine-tuning (MAE's recipe" in message, message
  message = _downstream("linear_eval", vit, **{"data.image_size": 48})
  assert ("config.data.image_size=48: the 'vit_micro' encoder of " in message and
          "was pretrained at 32 px") in message, message
  message = _downstream("linear_eval", vit, **{"data.eval_split": "tset"})
  assert ("config.data.eval_split='tset': split 'tset' names 'tset', which dataset "
          "'mssl_shapes/32' does not have; its splits: test, train. Did you mean "
          "'test'?") in message, message
  message = _downstream("finetune", vit, **{"data.train_split": "train+extra[:10]"})
  assert "names 'extra', which dataset" in message, message
  empty = tmp_path / "empty"
  empty.mkdir()
  message = _downstream("linear_eval", empty)
  assert f"config.pretrained_workdir={str(empty)!r}: " in message
  assert "is not a pretraining workdir" in message, message
  # A workdir that fits passes (the same checks, no error).
  config = load_config("linear_eval")
  config.pretrained_workdir = str(vit)
  validation.validate(config, device_count=1, process_count=1)


def test_an_image_folder_eval_class_missing_from_train_fails_before_building(tmp_path):
  root = write_image_folder(tmp_path / "folder", {"train": "ab", "test": "abc"})
  message = problems("quickstart", **{"data.dataset": f"image_folder:{root}",
                                      "data.eval_split": "test", "data.knn_split": "train"})
  assert (f"config.data.eval_split='test': split 'test' of image folder {str(root)!r} "
          "holds class folder(s) ['c'] that the training split 'train' lacks (its "
          "classes: ['a', 'b'])") in message, message
  assert message.count("\n  - ") == 1, message
  message = problems("quickstart", **{"data.dataset": f"image_folder:{root}",
                                      "data.eval_split": "val", "data.knn_split": "train"})
  assert "split 'val' names 'val', which dataset" in message
  assert "its splits: test, train." in message, message


@pytest.mark.parametrize("key,value,allowed", [
    ("loss.w", -1.0, "a number >= 0"),
    ("loss.mu", 0.0, "a positive number"),
    ("model.size", "huge", "nano, micro, small"),
    ("model.name", "resnet18", "causal_lm"),
    ("model.dtype", "float16", "float32, bfloat16"),
    ("data.dataset", "gsm8k", "arithmetic"),
])
def test_language_model_fields_fail_naming_value_and_domain(key, value, allowed):
  message = problems("mce_lm_arith", "runlocal", **{key: value})
  assert f"config.{key}={value!r} is not allowed" in message, message
  assert allowed in message and message.count("\n  - ") == 1, message


def test_language_model_lengths_and_sizes():
  message = problems("mce_lm_arith", "runlocal", total_steps=-1, **{"data.train_problems": 4,
                                                                   "eval.batch_size": 0})
  assert "config.total_steps=-1 is not allowed" in message
  assert "config.data.train_problems=4 must be at least config.batch_size=16" in message
  assert "config.eval.batch_size=0 must be a positive multiple" in message
  config = load_config("mce_lm_arith", "runlocal")
  with config.unlocked():
    config.loss.lam = 1.0
  with pytest.raises(validation.ConfigError, match=r"config.loss has keys \['lam'\]"):
    validation.validate(config, device_count=1, process_count=1)
