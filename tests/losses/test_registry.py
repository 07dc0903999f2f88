"""mssl.losses.registry and every objective it registers, through the numpy reference
table (tests/losses/reference.py): golden values and gradients, invariances, the
stop-gradients of the target branch, a learning signal, sharding, and the registry's
entries."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tolerance
from mssl import losses
from mssl import matrix as M

from losses.reference import CASES, KINDS, make_batch

P = jax.sharding.PartitionSpec


# ------------------------------------------------------------ golden values ------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference(name, dtype):
  fn, ref = CASES[name]
  jitted = jax.jit(fn)
  for kind in KINDS:
    arrays = make_batch(kind)
    want = ref(*arrays)
    got = jitted(*(jnp.asarray(a, dtype) for a in arrays))
    assert got.dtype == dtype
    rtol = tolerance(dtype, 1e-9, 1e-4)
    assert abs(float(got) - want) <= rtol * max(abs(want), 1.0), (kind, float(got), want)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_numpy_reference(name, x64):
  fn, ref = CASES[name]
  arrays = make_batch("narrow", seed=1)
  arrays = [a[:5, :6] for a in arrays]  # small: the reference is differentiated by FD
  grad = jax.grad(fn, argnums=(0, 1))(*(jnp.asarray(a) for a in arrays))
  eps = 1e-4
  for arg, g in enumerate(grad):
    fd = np.zeros_like(arrays[arg])
    for idx in np.ndindex(fd.shape):
      vals = []
      for step in (2, 1, -1, -2):
        shifted = [a.copy() for a in arrays]
        shifted[arg][idx] += step * eps
        vals.append(ref(*shifted))
      fd[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * eps)
    scale = max(np.linalg.norm(fd), 1e-3)
    assert np.linalg.norm(np.asarray(g) - fd) <= 1e-6 * scale, (arg, name)


# ------------------------------------------------------------ invariances --------------
SYMMETRIC = sorted(set(CASES) - {"mmae", "mmae_centered", "umae"})


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_permutation_invariance(name, x64):
  fn, _ = CASES[name]
  arrays = [jnp.asarray(a) for a in make_batch("correlated", seed=2)]
  perm = np.random.default_rng(3).permutation(arrays[0].shape[0])
  base = float(fn(*arrays))
  permuted = float(fn(*(a[perm] for a in arrays)))
  assert permuted == pytest.approx(base, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_view_swap_symmetry(name, x64):
  fn, _ = CASES[name]
  z1, z2, p1, p2 = [jnp.asarray(a) for a in make_batch("correlated", seed=4)]
  assert float(fn(z2, z1, p2, p1)) == pytest.approx(float(fn(z1, z2, p1, p2)), rel=1e-10,
                                                    abs=1e-12)


# ------------------------------------------------------------ stop-gradients -----------
TEACHER_OBJECTIVES = {
    "matrix_ssl": dict(), "matrix_ssl_exact": dict(logm="exact"),
    "mec": dict(lam_inv=2.0), "kernel_ssl": dict(kernel="gaussian"),
    "kernel_ssl_poly_exact": dict(kernel="polynomial", logm="exact"),
    "byol": dict(), "simsiam": dict(),
}


@pytest.mark.parametrize("name", sorted(TEACHER_OBJECTIVES))
def test_no_gradient_reaches_the_target_branch(name):
  fn = losses.get(name.split("_exact")[0].replace("_poly", ""))
  kw = TEACHER_OBJECTIVES[name]
  arrays = [jnp.asarray(a, jnp.float32) for a in make_batch("narrow", seed=6)]
  loss = lambda *a: fn(*a, **kw)[0]
  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*arrays)
  assert np.any(np.asarray(grads[0]) != 0) and np.any(np.asarray(grads[1]) != 0)
  assert np.all(np.asarray(grads[2]) == 0) and np.all(np.asarray(grads[3]) == 0)


# ------------------------------------------------------------ learning signal ----------
# Objectives with a collapse-avoiding term. BYOL and SimSiam have none in the loss (they
# rely on the predictor / EMA asymmetry), so only their loss decrease is checked.
ANTI_COLLAPSE = {
    "matrix_ssl": dict(), "mec": dict(lam_inv=1.0), "kernel_ssl": dict(kernel="gaussian"),
    "frossl": dict(), "simclr": dict(temperature=0.2), "barlow_twins": dict(),
    "vicreg": dict(), "spectral_contrastive": dict(), "mmae": dict(), "umae": dict(),
}


def _as_objective(name, kw):
  obj = losses.spec(name)
  if obj.inputs == "two_branch":
    return lambda x1, x2: obj.fn(x1, x2, x1, x2, **kw)[0]
  if obj.inputs == "pair":
    return lambda x1, x2: obj.fn(x1, x2, **kw)[0]
  if obj.inputs == "multi_view":
    return lambda x1, x2: obj.fn([x1, x2], **kw)[0]
  return lambda x1, x2: obj.fn(x1, **kw)[0] + obj.fn(x2, **kw)[0]


def _optimise(loss_fn, x, steps=60, lr=0.05):
  opt = optax.adam(lr)
  state = opt.init(x)

  @jax.jit
  def step(x, state):
    value, grad = jax.value_and_grad(lambda x: loss_fn(*x))(x)
    updates, state = opt.update(grad, state)
    return optax.apply_updates(x, updates), state, value
  first = None
  for _ in range(steps):
    x, state, value = step(x, state)
    first = value if first is None else first
  return x, float(first), float(loss_fn(*x))


@pytest.mark.parametrize("name", sorted(ANTI_COLLAPSE) + ["byol", "simsiam"])
def test_gradient_steps_lower_the_loss(name):
  kw = ANTI_COLLAPSE.get(name, {})
  rng = np.random.default_rng(7)
  base = rng.normal(size=(32, 16))
  x = tuple(jnp.asarray(base + 0.5 * rng.normal(size=base.shape), jnp.float32)
            for _ in range(2))
  _, first, last = _optimise(_as_objective(name, kw), x, steps=15, lr=0.01)
  assert last < first - 1e-4 * max(1.0, abs(first)), (first, last)


@pytest.mark.parametrize("name", sorted(ANTI_COLLAPSE))
def test_collapsed_embeddings_are_not_a_minimum(name):
  """Start near collapse (every row almost the same vector): the objective spreads them."""
  rng = np.random.default_rng(8)
  const = rng.normal(size=(1, 16))
  x = tuple(jnp.asarray(const + 0.01 * rng.normal(size=(32, 16)), jnp.float32)
            for _ in range(2))
  start_rank = float(M.effective_rank(M.batch_center(x[0])))
  x, first, last = _optimise(_as_objective(name, ANTI_COLLAPSE[name]), x, steps=150)
  end_rank = float(M.effective_rank(M.batch_center(x[0])))
  assert last < first
  # The centred batch starts isotropic-but-tiny; what matters is that the *uncentred*
  # embeddings leave the constant vector: their effective rank rises well above 1.
  uncentred = float(M.effective_rank(x[0]))
  assert uncentred > 4.0, (name, uncentred, start_rank, end_rank)


# ------------------------------------------------------------ sharding -----------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_equals_unsharded(name, data_mesh):
  fn, _ = CASES[name]
  arrays = [np.asarray(a, np.float32) for a in make_batch("correlated", seed=9)]
  arrays = [np.concatenate([a, a[::-1] * 0.9 + 0.1], 0)[:16] for a in arrays]  # B = 16
  rows = jax.sharding.NamedSharding(data_mesh, P("data"))
  sharded = [jax.device_put(a, rows) for a in arrays]
  grad_fn = jax.jit(jax.value_and_grad(fn))
  want_v, want_g = grad_fn(*arrays)
  got_v, got_g = grad_fn(*sharded)
  np.testing.assert_allclose(got_v, want_v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ the registry -------------
def test_registry_names_and_entries():
  expected = {"matrix_ssl", "mec", "kernel_ssl", "mmae", "umae", "mae", "frossl", "simclr",
              "spectral_contrastive", "barlow_twins", "vicreg", "byol", "simsiam"}
  assert expected <= set(losses.names())
  assert losses.get("matrix_ssl") is losses.matrix_ssl
  assert losses.spec("byol").uses_teacher and not losses.spec("simsiam").uses_teacher
  assert {n: losses.spec(n).teacher for n in ("matrix_ssl", "mec", "kernel_ssl", "byol",
                                              "simsiam", "simclr", "frossl", "mmae")} == \
      dict(matrix_ssl="ema", mec="ema", kernel_ssl="ema", byol="ema", simsiam="online",
           simclr="none", frossl="none", mmae="none")
  with pytest.raises(ValueError, match="goes with inputs='two_branch'"):
    losses.register("bad_teacher", inputs="pair", teacher="ema")
  assert losses.spec("frossl").inputs == "multi_view"
  value, aux = losses.get("mae")(jnp.ones((4, 3)))
  assert float(value) == 0.0 and aux == {}
