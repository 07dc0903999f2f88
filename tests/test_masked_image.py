"""M-MAE / U-MAE / MAE: the objective, the pipeline, layer decay, mixing, evaluations."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import export, losses, models, optim, train, validation
from mssl.steps import finetune, masked_image
from mssl import writers

from helpers import load_config, small


def tiny_mae(**kw):
  return models.mae("micro", patch_size=4, image_size=16, decoder_width=32,
                    decoder_depth=1, decoder_heads=2, **kw)


@pytest.fixture(scope="module")
def tiny_output():
  model = tiny_mae()
  images = jax.random.uniform(jax.random.key(0), (6, 16, 16, 3))
  params = model.init(jax.random.key(1), images, jax.random.key(2), train=False)
  return model.apply(params, images, jax.random.key(3), train=False)


# ------------------------------------------------------------ the objective -------------
def test_reconstruction_loss_counts_only_masked_patches(tiny_output):
  out = tiny_output
  mask = np.asarray(out.mask)
  assert mask.sum(1).tolist() == [12] * 6  # 16 patches, ratio 0.75
  base = float(losses.reconstruction_loss(out.pred, out.target, out.mask))
  # Golden value: mean over masked patches of the per-patch mean squared error.
  per_patch = np.mean((np.asarray(out.pred) - np.asarray(out.target)) ** 2, -1)
  np.testing.assert_allclose(base, (per_patch * mask).sum() / mask.sum(), rtol=1e-6)
  noise = 5.0 * jax.random.normal(jax.random.key(4), out.pred.shape)
  visible_only = out.pred + noise * (1 - out.mask)[..., None]
  masked_only = out.pred + noise * out.mask[..., None]
  assert float(losses.reconstruction_loss(visible_only, out.target, out.mask)) == \
      pytest.approx(base, rel=1e-6)
  assert float(losses.reconstruction_loss(masked_only, out.target, out.mask)) > base + 1.0
  grad = jax.grad(lambda p: losses.reconstruction_loss(p, out.target, out.mask))(out.pred)
  assert np.all(np.asarray(grad)[mask == 0] == 0)


def test_targets_are_per_patch_normalised(tiny_output):
  target = np.asarray(tiny_output.target)
  np.testing.assert_allclose(target.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(target.var(-1), 1, atol=1e-3)


def _rows_normalised(z):
  return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_mmae_regulariser_is_minus_tcr_by_hand(x64, tiny_output):
  rng = np.random.default_rng(0)
  for batch, dim in ((16, 8), (6, 32)):
    z = rng.standard_normal((batch, dim)) + 0.5
    zn = _rows_normalised(z)
    mu = 3.0
    expected = -np.linalg.slogdet(np.eye(dim) + mu / dim * zn.T @ zn)[1]
    np.testing.assert_allclose(float(losses.mmae_regularizer(jnp.asarray(z))), expected,
                               rtol=1e-10)
  out = tiny_output
  cls = np.asarray(out.cls, np.float64)
  zn = _rows_normalised(cls)
  tcr = np.linalg.slogdet(np.eye(cls.shape[1]) + 3.0 / cls.shape[1] * zn.T @ zn)[1]
  loss, aux = losses.masked_image_objective(out.pred, out.target, out.mask, out.cls,
                                            regularizer="mmae", lam=0.01, mu=3.0)
  recon = float(losses.reconstruction_loss(out.pred, out.target, out.mask))
  np.testing.assert_allclose(float(aux["regularizer"]), -tcr, rtol=1e-5)
  np.testing.assert_allclose(float(loss), recon - 0.01 * tcr, rtol=1e-5)


def test_umae_regulariser_matches_its_formula(x64):
  z = np.random.default_rng(1).standard_normal((10, 7))
  zn = _rows_normalised(z)
  expected = np.mean((zn @ zn.T) ** 2)
  np.testing.assert_allclose(float(losses.umae_regularizer(jnp.asarray(z))), expected,
                             rtol=1e-12)


def test_lam_zero_is_mae(tiny_output):
  out = tiny_output

  def total(pred, cls, regularizer, lam):
    return losses.masked_image_objective(pred, out.target, out.mask, cls,
                                         regularizer=regularizer, lam=lam)[0]
  mae = total(out.pred, out.cls, "mae", 0.01)
  for name in ("mmae", "umae"):
    assert float(total(out.pred, out.cls, name, 0.0)) == pytest.approx(float(mae))
    g0 = jax.grad(total, argnums=(0, 1))(out.pred, out.cls, name, 0.0)
    g1 = jax.grad(total, argnums=(0, 1))(out.pred, out.cls, "mae", 0.01)
    jax.tree_util.tree_map(np.testing.assert_array_equal, g0, g1)
  # With lam > 0 the regulariser does change the loss and moves the CLS features.
  assert float(total(out.pred, out.cls, "mmae", 0.01)) < float(mae)


def test_objective_rejects_bad_arguments(tiny_output):
  out = tiny_output
  with pytest.raises(ValueError, match="regularizer must be one of"):
    losses.masked_image_objective(out.pred, out.target, out.mask, out.cls,
                                  regularizer="vicreg")
  with pytest.raises(ValueError, match="lam must be non-negative"):
    losses.masked_image_objective(out.pred, out.target, out.mask, out.cls, lam=-1.0)
  with pytest.raises(ValueError, match="mask"):
    losses.reconstruction_loss(out.pred, out.target, out.mask[:, :3])


# ------------------------------------------------------------ layer decay, mixing -------
def test_layer_decay_multipliers_of_vit_base():
  classifier = finetune.Classifier(models.vit("base", patch_size=16, image_size=224,
                                              pos_embedding="sincos"), 1000)
  shapes = jax.eval_shape(lambda: classifier.init(jax.random.key(0),
                                                  jnp.zeros((1, 224, 224, 3))))["params"]
  mult = optim.layer_decay_multipliers(shapes, depth=12, decay=0.65)
  assert mult["encoder"]["patch_embed"]["kernel"] == pytest.approx(0.65 ** 13)
  assert mult["encoder"]["cls"] == pytest.approx(0.65 ** 13)
  blocks = mult["encoder"]["encoder"]
  assert blocks["block0"]["MlpBlock_0"]["Dense_0"]["kernel"] == pytest.approx(0.65 ** 12)
  assert blocks["block5"]["LayerNorm_0"]["scale"] == pytest.approx(0.65 ** 7)
  assert blocks["block11"]["MultiHeadDotProductAttention_0"]["query"]["kernel"] == \
      pytest.approx(0.65)
  assert blocks["final_norm"]["scale"] == 1.0
  assert mult["head"]["kernel"] == 1.0
  no_decay = optim.decay_mask(shapes, exclude=finetune.NO_DECAY)
  assert not no_decay["encoder"]["cls"]
  assert not no_decay["encoder"]["encoder"]["block0"]["LayerNorm_0"]["scale"]
  assert no_decay["encoder"]["patch_embed"]["kernel"] and no_decay["head"]["kernel"]


def test_layer_decay_scales_each_update():
  params = {"patch_embed": {"kernel": jnp.ones((2, 2))},
            "encoder": {"block0": {"w": jnp.ones((2, 2))}, "block1": {"w": jnp.ones((2, 2))}},
            "head": {"kernel": jnp.ones((2, 2))}}
  tx = optax_sgd_with_decay(params, decay=0.5, depth=2)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  got = {k: float(jnp.ravel(v)[0]) for k, v in
         (("embed", updates["patch_embed"]["kernel"]),
          ("b0", updates["encoder"]["block0"]["w"]),
          ("b1", updates["encoder"]["block1"]["w"]), ("head", updates["head"]["kernel"]))}
  assert got == pytest.approx({"embed": -0.125, "b0": -0.25, "b1": -0.5, "head": -1.0})


def optax_sgd_with_decay(params, *, decay, depth):
  import optax
  return optax.chain(optax.sgd(1.0),
                     optim.scale_by_multipliers(
                         optim.layer_decay_multipliers(params, depth, decay)))


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixup_and_cutmix_mix_targets_like_images(mixup, cutmix):
  n, size, classes = 8, 16, 4
  labels = jnp.arange(n) % classes
  # Image i is constant with value i: the share of each source is readable per pixel.
  images = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[:, None, None, None],
                            (n, size, size, 3))
  targets = jax.nn.one_hot(labels, classes)
  for seed in range(6):
    mixed, mixed_targets = finetune.mix_batch(
        jax.random.key(seed), images, targets, mixup_alpha=mixup, cutmix_alpha=cutmix)
    mixed, mixed_targets = np.asarray(mixed), np.asarray(mixed_targets)
    np.testing.assert_allclose(mixed_targets.sum(1), 1.0, rtol=1e-6)
    for i in (0, 3):
      j = n - 1 - i
      # mean pixel = lam * i + (1 - lam) * j, so lam is recovered from the image.
      lam = (mixed[i].mean() - j) / (i - j)
      expected = lam * np.asarray(targets[i]) + (1 - lam) * np.asarray(targets[j])
      np.testing.assert_allclose(mixed_targets[i], expected, atol=1e-5)
      if cutmix and not mixup:  # cutmix pixels come from one image or the other
        assert set(np.unique(mixed[i])) <= {float(i), float(j)}


# ------------------------------------------------------------ the pipeline --------------
def masked_config(objective, tfds_dir, steps, **overrides):
  """A runlocal masked-image config of ``steps`` steps at 32 px, batch 64."""
  c = small(load_config(f"{objective}_vitb", "runlocal"), tfds_dir, **overrides)
  c.data.image_size = 32
  c.batch_size = 64
  c.total_steps = steps
  c.log_every = 1
  c.eval_every = c.checkpoint_every = steps
  return c


@pytest.fixture(scope="module")
def pretrained(tfds_dir, tmp_path_factory):
  """Short M-MAE, U-MAE and MAE runs from the same initialisation and data."""
  runs = {}
  for objective in ("mmae", "umae", "mae"):
    workdir = tmp_path_factory.mktemp(objective)
    config = masked_config(objective, tfds_dir, 40, **{"optimizer.base_lr": 3e-3})
    results = train.train_and_evaluate(config, str(workdir))
    runs[objective] = (workdir, results,
                       writers.read_jsonl(os.path.join(workdir, "metrics.jsonl")))
  return runs


def _series(records, key):
  return [r[key] for r in records if key in r]


@pytest.mark.slow
def test_masked_image_runs_lower_reconstruction_and_mmae_raises_rank(pretrained):
  ranks = {}
  for objective, (workdir, results, records) in pretrained.items():
    recon = _series(records, "loss/reconstruction")
    assert len(recon) == 40
    assert np.mean(recon[-5:]) < 0.9 * np.mean(recon[:5]), (objective, recon)
    assert results["steps"] == 40 and "eval/knn_accuracy" in results
    ranks[objective] = np.mean(_series(records, "effective_rank_cls")[-5:])
    for name in ("reconstructions.png", "loss.png", "effective_rank.png", "spectrum.png"):
      assert (workdir / name).stat().st_size > 1000, name
  print("CLS effective rank after 40 steps:", ranks)
  # Measured here: mmae 19.65, umae 18.88, mae 18.12 (same initialisation and batches).
  assert ranks["mmae"] > ranks["mae"], ranks


@pytest.mark.slow
def test_mmae_logs_its_components_and_resumes(pretrained, tfds_dir, tmp_path):
  workdir, _, records = pretrained["mmae"]
  keys = set().union(*records)
  assert {"loss", "loss/reconstruction", "loss/regularizer", "loss/coding_rate",
          "effective_rank_cls", "eval/effective_rank_features"} <= keys
  # 20 steps, then a resumed run to 40, equals the straight run.
  config = masked_config("mmae", tfds_dir, 40, **{"optimizer.base_lr": 3e-3,
                                                  "stop_after": 20})
  train.train_and_evaluate(config, str(tmp_path))
  config.stop_after = -1
  train.train_and_evaluate(config, str(tmp_path))
  _, _, resumed, _ = export.load_variables(str(tmp_path))
  _, _, straight, _ = export.load_variables(str(workdir))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                         jax.device_get(resumed["params"]),
                         jax.device_get(straight["params"]))


@pytest.mark.slow
def test_linear_probe_and_finetune_from_an_mmae_checkpoint(pretrained, tmp_path):
  workdir = str(pretrained["mmae"][0])
  embed = export.load_encoder(workdir)
  feats = embed(np.zeros((3, 32, 32, 3), np.float32))
  assert feats.shape == (3, 64) and np.all(np.isfinite(feats))

  probe_cfg = load_config("linear_eval")
  probe_cfg.pretrained_workdir = workdir
  probe_cfg.eval.probe_epochs = 3
  results = train.train_and_evaluate(probe_cfg, str(tmp_path / "probe"))
  assert 0.0 <= results["linear_probe"] <= 1.0 and 0.0 <= results["knn"] <= 1.0
  saved = json.loads((tmp_path / "probe" / "results.json").read_text())
  assert saved["checkpoint_step"] == 40

  ft_cfg = load_config("finetune", "runlocal")
  ft_cfg.pretrained_workdir = workdir
  ft_cfg.batch_size = 64
  ft_cfg.eval.batch_size = 64
  ft_cfg.data.eval_split = "test[:128]"
  results = train.train_and_evaluate(ft_cfg, str(tmp_path / "ft"))
  assert results["steps"] == 6 and 0.0 <= results["eval/accuracy"] <= 1.0
  assert json.loads((tmp_path / "ft" / "run.json").read_text())["pretrained_step"] == 40


@pytest.mark.slow
def test_finetune_starts_from_the_pretrained_encoder(pretrained, tmp_path):
  workdir = str(pretrained["mmae"][0])
  cfg = load_config("finetune", "runlocal")
  cfg.pretrained_workdir = workdir
  cfg.total_steps = 1
  cfg.optimizer.base_lr = 1e-12  # one step that barely moves anything
  cfg.batch_size = 64
  cfg.eval.batch_size = 64
  cfg.data.eval_split = "test[:64]"
  train.train_and_evaluate(cfg, str(tmp_path))
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as reader:  # the saved tree as written, no target
    saved = reader.restore(tmp_path / "checkpoints" / "1" / "state")
  encoder, _ = export.load_encoder_params(workdir)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                         jax.device_get(encoder), saved["params"]["encoder"])


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


def test_reconstructions_are_images_in_range(tiny_output):
  network = masked_image.MaskedImageNetwork(tiny_mae())
  images = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  params = network.init(jax.random.key(0), images, jax.random.key(1), train=False)["params"]
  out = masked_image.reconstructions(network, params, images)
  assert set(out) == {"original", "masked", "reconstruction"}
  for value in out.values():
    assert value.shape == images.shape and value.min() >= 0 and value.max() <= 1
  hidden = out["masked"] == 0.5
  assert 0.6 < hidden.mean() < 0.9  # 12 of 16 patches hidden (some pixels equal 0.5 anyway)
  visible = ~hidden.all(-1)
  np.testing.assert_allclose(out["reconstruction"][visible], images[visible], atol=1e-5)
