"""mssl.export: the encoder of a pretraining workdir, loaded as ``embed(images)``."""

import json

import numpy as np
import pytest

from mssl import export, train

from helpers import load_config, small


@pytest.mark.slow
def test_export_and_offline_linear_eval(tfds_dir, tmp_path):
  pre = tmp_path / "pre"
  config = small(load_config("barlow_twins_r18_cifar", "runlocal"), tfds_dir,
                 total_steps=2, checkpoint_every=2, eval_every=2,
                 **{"model.name": "vit_micro", "model.patch_size": 4})
  train.train_and_evaluate(config, str(pre))
  embed = export.load_encoder(str(pre))
  images = np.random.default_rng(0).uniform(size=(5, 16, 16, 3)).astype(np.float32)
  features = embed(images)
  assert features.shape == (5, 64) and np.all(np.isfinite(features))
  np.testing.assert_allclose(embed(images[:2]), features[:2], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, 3\)"):
    embed(images[0])
  eval_config = load_config("linear_eval")
  eval_config.pretrained_workdir = str(pre)
  eval_config.eval.probe_epochs = 3
  eval_config.eval.batch_size = 64
  results = train.train_and_evaluate(eval_config, str(tmp_path / "eval"))
  assert 0.0 <= results["linear_probe"] <= 1.0 and results["checkpoint_step"] == 2
  assert json.loads((tmp_path / "eval" / "results.json").read_text())["knn"] == \
      pytest.approx(results["knn"])
