"""mssl.losses.masked: M-MAE / U-MAE / MAE's objective (the reconstruction loss over the
masked patches, the regularisers by hand) and the official runs' gradient scale."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import losses


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


# ------------------------------------------------------------ the official runs -------
# The official M-MAE / U-MAE regularisers (yifanzhang-pro/M-MAE and zhangq327/U-MAE,
# loss_func.py) on the gathered batch, transcribed in jax.numpy.
def official_tcr_loss(z, mu=3.0):
  f = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  sim = f.T @ f
  return -jnp.linalg.slogdet(jnp.eye(sim.shape[0]) + mu / sim.shape[0] * sim)[1]


def official_square_loss(z):
  f = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  return jnp.mean((f @ f.T) ** 2)


MASKED_REGULARIZERS = {"mmae": (dict(mu=3.0), official_tcr_loss),
                       "umae": (dict(), official_square_loss)}


def _masked_image_problem(seed=13, batch=16, features=5, dim=6, patches=4, pixels=3):
  """A tiny linear "encoder" (CLS = x A) and "decoder" (pred = x Bm), fixed targets and a
  mask hiding 3 of 4 patches in every image (MAE's fixed count per image)."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(batch, features)) + 0.3)
  params = {"enc": jnp.asarray(rng.normal(size=(features, dim))),
            "dec": jnp.asarray(rng.normal(size=(features, patches * pixels)))}
  target = jnp.asarray(rng.normal(size=(batch, patches, pixels)))
  mask = np.ones((batch, patches))
  mask[np.arange(batch), rng.integers(0, patches, size=batch)] = 0.0
  shape = (patches, pixels)
  return x, params, target, jnp.asarray(mask), shape


def _official_ddp_gradient(params, x, target, mask, shape, world, lam, official_reg):
  """The official runs on ``world`` GPUs: rank r sees its shard; the regulariser is
  computed on the all-gathered CLS features, whose backward (GatherLayer) keeps only
  rank r's rows (the other ranks' rows are constants here); DDP averages the ranks'
  parameter gradients."""
  batch = x.shape[0]
  rows = batch // world
  grads = []
  for rank in range(world):
    mine = slice(rank * rows, (rank + 1) * rows)
    own = np.zeros((batch, 1), bool)
    own[mine] = True

    def rank_loss(params):
      z = x @ params["enc"]
      gathered = jnp.where(own, z, jax.lax.stop_gradient(z))
      pred = (x[mine] @ params["dec"]).reshape(rows, *shape)
      per_patch = jnp.mean((pred - target[mine]) ** 2, axis=-1)
      recon = jnp.sum(per_patch * mask[mine]) / jnp.sum(mask[mine])
      return recon + lam * official_reg(gathered)
    grads.append(jax.grad(rank_loss)(params))
  return jax.tree_util.tree_map(lambda *g: sum(g) / world, *grads)


def _mssl_masked_loss(params, x, target, mask, shape, regularizer, lam, **kw):
  pred = (x @ params["dec"]).reshape(x.shape[0], *shape)
  return losses.masked_image_objective(pred, target, mask, x @ params["enc"],
                                       regularizer=regularizer, lam=lam, **kw)[0]


def _tree_rel_err(a, b):
  num = sum(float(jnp.sum((u - v) ** 2)) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                         jax.tree_util.tree_leaves(b)))
  den = sum(float(jnp.sum(v ** 2)) for v in jax.tree_util.tree_leaves(b))
  return (num / den) ** 0.5


@pytest.mark.parametrize("regularizer", sorted(MASKED_REGULARIZERS))
def test_reference_world_size_reproduces_the_official_ddp_gradient(regularizer, x64):
  reg_kw, official_reg = MASKED_REGULARIZERS[regularizer]
  x, params, target, mask, shape = _masked_image_problem()
  lam = 0.5  # large enough that the regulariser's share of the gradient is visible
  def exact_objective(prm):  # the whole batch's L_MAE + lam * reg, differentiated exactly
    pred = (x @ prm["dec"]).reshape(x.shape[0], *shape)
    per_patch = jnp.mean((pred - target) ** 2, axis=-1)
    return (jnp.sum(per_patch * mask) / jnp.sum(mask)
            + lam * official_reg(x @ prm["enc"]))
  exact = jax.grad(exact_objective)(params)
  # W = 1: mssl's default is the exact gradient, and so is the official single-GPU run.
  base_value, default = jax.value_and_grad(_mssl_masked_loss)(
      params, x, target, mask, shape, regularizer, lam, **reg_kw)
  assert _tree_rel_err(default, exact) < 1e-12
  assert _tree_rel_err(_official_ddp_gradient(params, x, target, mask, shape, 1, lam,
                                              official_reg), exact) < 1e-12
  for world in (2, 4, 8):
    official = _official_ddp_gradient(params, x, target, mask, shape, world, lam,
                                      official_reg)
    loss = functools.partial(_mssl_masked_loss, x=x, target=target, mask=mask, shape=shape,
                             regularizer=regularizer, lam=lam,
                             reference_world_size=world, **reg_kw)
    value, got = jax.value_and_grad(loss)(params)
    assert float(value) == float(base_value)  # the loss value does not change
    assert _tree_rel_err(got, official) < 1e-12, world
    assert _tree_rel_err(exact, official) > 1e-3, world  # the setting matters
    # The same parameter update (plain SGD step) as the official run.
    step = lambda prm, g: jax.tree_util.tree_map(lambda p_, g_: p_ - 0.1 * g_, prm, g)
    assert _tree_rel_err(step(params, got), step(params, official)) < 1e-12


def test_reference_world_size_is_checked():
  z = jnp.ones((4, 3))
  tokens, mask = jnp.ones((4, 2, 5)), jnp.ones((4, 2))
  for bad in (0, 1.5, True):
    with pytest.raises(ValueError, match="reference_world_size"):
      losses.masked_image_objective(tokens, tokens, mask, z, reference_world_size=bad)
