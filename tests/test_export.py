"""mssl.export: the encoder of a pretraining workdir, loaded as ``embed(images)``, and
written for torchvision (``python -m mssl.export``) and read back."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from mssl import export, run
from mssl.steps import two_view

from helpers import load_config, pretraining_workdir, small


def test_the_encoder_of_a_workdir_gives_the_saved_encoders_features(tmp_path):
  """The network rebuilt from config.json with the checkpoint's variables gives what the
  saved network gives (not a fresh initialisation), in batches or not."""
  config, network, variables = pretraining_workdir(tmp_path, step=3, seed=0)
  images = np.random.default_rng(0).uniform(size=(5, 16, 16, 3)).astype(np.float32)
  features = jax.jit(lambda v, x: network.apply(v, x, method=network.embed))
  want = np.asarray(features(variables, images))
  embed = export.load_encoder(str(tmp_path), batch_size=2)  # three batches: 2, 2, 1
  got = embed(images)
  chex.assert_shape(got, (5, 64))
  chex.assert_type(got, np.float32)
  # Batches of 2, 2 and 1 against one of 5: XLA blocks the matmuls by batch shape, so the
  # float32 rounding differs (7e-6 relative measured with --xla_cpu_max_isa=AVX); a fresh
  # initialisation differs by O(1) (below).
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)
  fresh = two_view.init_variables(network, 16, config.seed)  # what config.json would give
  assert not np.allclose(got, features(fresh, images), atol=1e-3)
  assert embed.config.objective == "simclr" and embed.config.model.name == "vit_micro"
  params, step = export.load_encoder_params(str(tmp_path))
  assert step == 3
  chex.assert_trees_all_close(jax.device_get(params), variables["params"]["encoder"])
  loaded_config, _, loaded, loaded_step = export.load_variables(str(tmp_path), step=3)
  assert loaded_step == 3 and set(loaded) == {"params", "batch_stats"}
  assert json.loads(loaded_config.to_json()) == json.loads(config.to_json_best_effort())


def test_what_is_not_a_pretraining_workdir_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a pretraining workdir"):
    export.load_encoder(str(tmp_path))
  from mssl import loop
  loop.save_config(load_config("quickstart"), str(tmp_path), {"num_classes": 10})
  with pytest.raises(FileNotFoundError, match=r"no checkpoint under .*/checkpoints"):
    export.load_encoder(str(tmp_path))


@pytest.mark.slow(seconds=11)
def test_export_and_offline_linear_eval(tfds_dir, tmp_path):
  pre = tmp_path / "pre"
  config = small(load_config("barlow_twins_r18_cifar", "runlocal"), tfds_dir,
                 total_steps=2, checkpoint_every=2, eval_every=2,
                 **{"model.name": "vit_micro", "model.patch_size": 4})
  run.train_and_evaluate(config, str(pre))
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
  results = run.train_and_evaluate(eval_config, str(tmp_path / "eval"))
  assert 0.0 <= results["linear_probe"] <= 1.0 and results["checkpoint_step"] == 2
  assert json.loads((tmp_path / "eval" / "results.json").read_text())["knn"] == \
      pytest.approx(results["knn"])


def test_reading_a_workdir_creates_nothing_in_it(tmp_path):
  """export only reads: a workdir without checkpoints stays without a checkpoints/."""
  pretraining_workdir(tmp_path, step=3, seed=0)
  before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
  export.load_variables(str(tmp_path))
  assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
  empty = tmp_path / "empty"
  (empty).mkdir()
  (empty / "config.json").write_text((tmp_path / "config.json").read_text())
  (empty / "run.json").write_text((tmp_path / "run.json").read_text())
  with pytest.raises(FileNotFoundError, match="no checkpoint under"):
    export.load_variables(str(empty))
  assert not (empty / "checkpoints").exists()


def test_torchvision_export_from_the_command_line_and_back(tmp_path):
  """``python -m mssl.export --format=torchvision`` on a ResNet workdir writes
  safetensors whose tensors are the checkpoint's in torchvision's layout (conv OIHW, BN
  statistics), whose metadata names the stem and width, and ``from_torchvision`` reads
  them back into the saved variables exactly."""
  import subprocess
  import sys
  from safetensors.numpy import load_file
  from safetensors import safe_open
  from helpers import ROOT, flat
  config, _, variables = pretraining_workdir(tmp_path / "run", model={"name": "resnet18"})
  out = tmp_path / "export" / "r18.safetensors"
  done = subprocess.run([sys.executable, "-m", "mssl.export", f"--workdir={tmp_path / 'run'}",
                         "--format=torchvision", f"--out={out}"], cwd=ROOT,
                        capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert done.returncode == 0, done.stderr[-2000:]
  assert "torchvision.models.resnet18 (stem cifar, width 8) from step 3" in done.stdout
  tensors = load_file(str(out))
  encoder = variables["params"]["encoder"]
  np.testing.assert_array_equal(tensors["layer2.0.conv1.weight"],
                                np.transpose(encoder["stage2_block1"]["Conv_0"]["kernel"],
                                             (3, 2, 0, 1)))
  np.testing.assert_array_equal(
      tensors["layer3.0.downsample.1.running_var"],
      variables["batch_stats"]["encoder"]["stage3_block1"]["proj_bn"]["var"])
  with safe_open(str(out), "np") as f:
    meta = f.metadata()
  assert meta["stem"] == "cifar" and meta["width"] == "8" and "maxpool" in meta["conv1"]
  back = export.from_torchvision(str(out))
  want = flat({"params": encoder, "batch_stats": variables["batch_stats"]["encoder"]})
  got = flat(back)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_bad_export_requests_are_named(tmp_path):
  pretraining_workdir(tmp_path / "vit")  # a ViT encoder
  with pytest.raises(export.ExportError, match="'vit_micro', which has no torchvision "
                                               "counterpart"):
    export.export_weights(str(tmp_path / "vit"), "torchvision", str(tmp_path / "x"))
  with pytest.raises(export.ExportError, match=r"--format='onnx' is not supported; "
                                               r"supported: torchvision"):
    export.export_weights(str(tmp_path / "vit"), "onnx", str(tmp_path / "x"))
  (tmp_path / "empty").mkdir()
  assert export.main([f"--workdir={tmp_path / 'empty'}", "--format=torchvision",
                      f"--out={tmp_path / 'x'}"]) == 1
  assert not (tmp_path / "x").exists()


def _standardized_nchw(images):
  from mssl.steps.common import standardize
  return np.transpose(np.asarray(standardize(images), np.float32), (0, 3, 1, 2))


def test_timm_export_of_a_two_view_vit_gives_its_features_and_reads_back(tmp_path):
  """--format=timm on a ViT workdir: the exported tensors, run the way timm runs them
  (tests/models/reference.py), give ``load_encoder``'s features; ``from_timm`` reads them
  back exactly; the metadata holds timm's constructor arguments."""
  from helpers import flat
  from models.reference import timm_vit
  pretraining_workdir(tmp_path / "run")  # vit_micro, patch 4, 16 px, learned positions
  out = str(tmp_path / "vit.safetensors")
  meta = export.export_weights(str(tmp_path / "run"), "timm", out)
  kwargs = json.loads(meta["kwargs"])
  assert kwargs == {"img_size": 16, "patch_size": 4, "embed_dim": 64, "depth": 2,
                    "num_heads": 2, "mlp_ratio": 2.0, "num_classes": 0,
                    "global_pool": "token"}
  assert meta["timm_name"].startswith("none") and meta["pos_embed"] == "learned"
  images = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
  want = export.load_encoder(str(tmp_path / "run"))(images)
  from safetensors.numpy import load_file
  state = load_file(out)
  got = timm_vit(state, _standardized_nchw(images), patch=4, num_heads=2)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
  _, _, variables, _ = export.load_variables(str(tmp_path / "run"))
  want_params = flat(variables["params"]["encoder"])
  got_params = flat(export.from_timm(out, num_heads=2))
  assert want_params.keys() == got_params.keys()
  for key in want_params:
    np.testing.assert_array_equal(got_params[key], want_params[key], err_msg=key)
  with pytest.raises(export.ExportError, match="no timm ViT counterpart"):
    pretraining_workdir(tmp_path / "r18", model={"name": "resnet18"})
    export.export_weights(str(tmp_path / "r18"), "timm", out)


@pytest.mark.slow(seconds=2)
def test_timm_export_of_a_masked_image_encoder_writes_its_sincos_table(pretrained, tmp_path):
  from models.reference import timm_vit
  from safetensors.numpy import load_file
  workdir = str(pretrained["mmae"][0])
  out = str(tmp_path / "mmae.safetensors")
  meta = export.export_weights(workdir, "timm", out)
  assert meta["pos_embed"].startswith("fixed") and meta["objective"] == "mmae"
  images = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
  want = export.load_encoder(workdir)(images)
  kwargs = json.loads(meta["kwargs"])
  got = timm_vit(load_file(out), _standardized_nchw(images), patch=kwargs["patch_size"],
                 num_heads=kwargs["num_heads"])
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
  # The export folder loads as the workdir does (its model card and the timm file).
  np.testing.assert_allclose(export.load_encoder(str(tmp_path))(images), want, rtol=1e-5,
                             atol=1e-5)


def test_detectron2_export_uses_mocos_names_and_a_model_card_describes_the_folder(tmp_path):
  """--format=detectron2: the pickle detectron2 reads ({"model": ..., "__author__",
  "matching_heuristics": True}) with MoCo's renaming of torchvision's keys; every export
  into a folder is listed in its model_card.json with the run's architecture, objective,
  loss, step and config."""
  import pickle
  pretraining_workdir(tmp_path / "run", model={"name": "resnet50", "stem": "imagenet"})
  out = tmp_path / "export" / "r50.pkl"
  assert export.main([f"--workdir={tmp_path / 'run'}", "--format=detectron2",
                      f"--out={out}"]) == 0
  with open(out, "rb") as f:
    saved = pickle.load(f)
  assert saved["matching_heuristics"] is True and saved["__author__"] == "mssl"
  names = set(saved["model"])
  assert {"stem.conv1.weight", "stem.conv1.norm.weight", "stem.conv1.norm.running_var",
          "res2.0.conv1.weight", "res2.0.conv3.norm.bias", "res2.0.shortcut.weight",
          "res2.0.shortcut.norm.running_mean", "res5.2.conv3.norm.weight"} <= names
  assert not any(n.startswith(("layer", "conv1", "bn1", "fc")) or "num_batches" in n
                 or ".bn" in n for n in names)
  tv = export.convert.resnet_to_torchvision(
      *(export.load_variables(str(tmp_path / "run"))[2][k]["encoder"]
        for k in ("params", "batch_stats")))
  assert len(names) == len([k for k in tv if "num_batches" not in k])  # one name each
  np.testing.assert_array_equal(saved["model"]["res3.0.shortcut.norm.running_mean"],
                                tv["layer2.0.downsample.1.running_mean"])
  assert export.main([f"--workdir={tmp_path / 'run'}", "--format=torchvision",
                      f"--out={tmp_path / 'export' / 'r50.safetensors'}"]) == 0
  card = json.loads((tmp_path / "export" / "model_card.json").read_text())
  assert card["files"] == {"detectron2": "r50.pkl", "torchvision": "r50.safetensors"}
  assert card["architecture"]["name"] == "resnet50" and card["objective"] == "simclr"
  assert card["step"] == 3 and card["loss"] == dict(load_config(
      "simclr_r18_cifar", "runlocal").loss)
  assert card["config"]["model"]["stem"] == "imagenet" and card["mssl_version"]
  pretraining_workdir(tmp_path / "cifar", model={"name": "resnet18"})  # CIFAR stem
  export.export_weights(str(tmp_path / "cifar"), "torchvision",
                        str(tmp_path / "export" / "r18.safetensors"))
  card = json.loads((tmp_path / "export" / "model_card.json").read_text())
  assert card["files"] == {"torchvision": "r18.safetensors"}  # another run: a new card
  assert card["architecture"]["name"] == "resnet18"
  with pytest.raises(export.ExportError, match="detectron2's ResNets have the ImageNet "
                                               "stem"):
    export.export_weights(str(tmp_path / "cifar"), "detectron2", str(tmp_path / "x.pkl"))


def test_init_from_puts_exported_weights_into_the_encoder_and_checks_them(tmp_path):
  """``config.init_from`` (mssl.export.init_encoder): the encoder's variables become the
  file's, exactly; the heads keep their initialisation; another width is refused naming
  the tensors; validation names a missing file and a file of the other family."""
  from mssl import validation
  from helpers import flat
  _, network, saved = pretraining_workdir(tmp_path / "run", model={"name": "resnet18"})
  path = str(tmp_path / "r18.safetensors")
  export.export_weights(str(tmp_path / "run"), "torchvision", path)
  config = load_config("simclr_r18_cifar", "runlocal")
  config.data.image_size = 16
  fresh = two_view.init_variables(two_view.build_network(config, 10), 16, seed=7)
  started = export.init_encoder(fresh, path, config)
  for tree in ("params", "batch_stats"):
    want, got = flat(saved[tree]["encoder"]), flat(started[tree]["encoder"])
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  for key, value in flat(fresh["params"]["projector"]).items():
    np.testing.assert_array_equal(flat(started["params"]["projector"])[key], value)
  wider = load_config("simclr_r18_cifar", "runlocal")
  wider.model.width = 16
  with pytest.raises(export.ExportError, match="does not fit config.model .resnet18, width "
                                               "16"):
    export.init_encoder(two_view.init_variables(two_view.build_network(wider, 10), 16, 0),
                        path, wider)
  def problems(value, **model):
    c = load_config("simclr_r18_cifar", "runlocal")
    c.init_from = value
    c.model.update(model)
    with pytest.raises(validation.ConfigError) as info:
      validation.validate(c, device_count=1, process_count=1)
    return str(info.value)
  assert "config.init_from='/nope.safetensors' is not a file" in problems("/nope.safetensors")
  assert ("holds a torchvision state dict; config.model.name='vit_micro' starts from a "
          "timm one") in problems(path, name="vit_micro", patch_size=4)


@pytest.mark.parametrize("model,format", [({"name": "resnet18"}, "torchvision"),
                                          (None, "timm")])
def test_load_encoder_reads_an_export_folder_as_it_reads_the_workdir(tmp_path, model,
                                                                     format):
  pretraining_workdir(tmp_path / "run", model=model)
  export.export_weights(str(tmp_path / "run"), format, str(tmp_path / "out" / "w.safetensors"))
  images = np.random.default_rng(3).random((4, 16, 16, 3)).astype(np.float32)
  want = export.load_encoder(str(tmp_path / "run"))(images)
  from_folder = export.load_encoder(str(tmp_path / "out"))
  np.testing.assert_allclose(from_folder(images), want, rtol=1e-5, atol=1e-5)
  assert from_folder.config.objective == "simclr"
