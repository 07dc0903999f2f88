"""mssl.trainers.finetune: the fine-tuning config is the pretraining run's data with this
run's fields laid over it; fine-tuning (and probing) an M-MAE checkpoint
(conftest.pretrained) starts from its encoder."""

import json

import jax
import numpy as np
import pytest

from mssl import export, loop, run

from helpers import load_config


def test_data_fields_left_none_come_from_the_pretraining_run(tmp_path):
  pre = load_config("mmae_shapes")
  pre.data.eval_split = "test[:300]"
  pre.data.preset = "simclr_cifar"
  loop.save_config(pre, str(tmp_path), {"num_classes": 10})
  config = load_config("finetune", "shapes")
  config.pretrained_workdir = str(tmp_path)
  config.data.image_size = None
  pre_config, data_config = export.downstream_data(config)
  assert pre_config.objective == "mmae" and pre_config.data.eval_split == "test[:300]"
  assert data_config.dataset == pre.data.dataset                 # None here
  assert data_config.image_size == pre.data.image_size == 32     # None here
  assert data_config.eval_split == "test[:2000]"                 # the shapes recipe's
  assert data_config.preset == "mae"                             # fine-tuning's views
  assert tuple(data_config.preset_overrides.crop_scale) == (0.08, 1.0)
  assert pre_config.data.preset == "simclr_cifar"                # the saved one untouched


@pytest.mark.slow(seconds=80)
def test_linear_probe_and_finetune_from_an_mmae_checkpoint(pretrained, tmp_path):
  workdir = str(pretrained["mmae"][0])
  embed = export.load_encoder(workdir)
  feats = embed(np.zeros((3, 32, 32, 3), np.float32))
  assert feats.shape == (3, 64) and np.all(np.isfinite(feats))

  probe_cfg = load_config("linear_eval")
  probe_cfg.pretrained_workdir = workdir
  probe_cfg.eval.probe_epochs = 3
  results = run.train_and_evaluate(probe_cfg, str(tmp_path / "probe"))
  assert 0.0 <= results["linear_probe"] <= 1.0 and 0.0 <= results["knn"] <= 1.0
  saved = json.loads((tmp_path / "probe" / "results.json").read_text())
  assert saved["checkpoint_step"] == 40

  ft_cfg = load_config("finetune", "runlocal")
  ft_cfg.pretrained_workdir = workdir
  ft_cfg.batch_size = 64
  ft_cfg.eval.batch_size = 64
  ft_cfg.data.eval_split = "test[:128]"
  results = run.train_and_evaluate(ft_cfg, str(tmp_path / "ft"))
  assert results["steps"] == 6 and 0.0 <= results["eval/accuracy"] <= 1.0
  assert json.loads((tmp_path / "ft" / "run.json").read_text())["pretrained_step"] == 40


@pytest.mark.slow(seconds=8)
@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_finetune_starts_from_the_pretrained_encoder_or_random_init(pretrained, tmp_path,
                                                                     init):
  """init="pretrained" starts from the pretraining run's encoder; init="random" from the
  same architecture at random initialisation (the fine-tune baseline), nothing loaded."""
  workdir = str(pretrained["mmae"][0])
  cfg = load_config("finetune", "runlocal")
  cfg.pretrained_workdir = workdir
  cfg.finetune.init = init
  cfg.total_steps = 1
  cfg.optimizer.base_lr = 1e-12  # one step that barely moves anything
  cfg.batch_size = 64
  cfg.eval.batch_size = 64
  cfg.data.eval_split = "test[:64]"
  run.train_and_evaluate(cfg, str(tmp_path))
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as reader:  # the saved tree as written, no target
    saved = reader.restore(tmp_path / "checkpoints" / "1" / "state")
  encoder, _ = export.load_encoder_params(workdir)
  encoder = jax.device_get(encoder)
  assert jax.tree_util.tree_structure(encoder) == \
      jax.tree_util.tree_structure(saved["params"]["encoder"])
  info = json.loads((tmp_path / "run.json").read_text())
  assert info["init"] == init
  if init == "pretrained":
    assert info["pretrained_step"] == 40
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                           encoder, saved["params"]["encoder"])
  else:
    assert info["pretrained_step"] == 0
    kernel = saved["params"]["encoder"]["patch_embed"]["kernel"]
    assert np.abs(kernel - encoder["patch_embed"]["kernel"]).max() > 1e-2
