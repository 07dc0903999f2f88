"""mssl.losses.language: MCE of next-token predictions against a brute-force V x V
reference, its invariances, padding, sharding, bf16 logits and its memory at V = 32,000."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl.losses import language


def reference_mce(logits, targets, mask, mu):
  """The definition, in float64 numpy with V x V matrices: -tr(P log Q) + tr(Q)."""
  logits = np.asarray(logits, np.float64)
  keep = np.asarray(mask, bool).reshape(-1)
  logits = logits.reshape(-1, logits.shape[-1])[keep]
  targets = np.asarray(targets).reshape(-1)[keep]
  vocab, m = logits.shape[-1], len(targets)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  y = np.eye(vocab)[targets]
  big_p = y.T @ y / m
  big_q = p.T @ p / m + mu * np.eye(vocab)
  w, u = np.linalg.eigh(big_q)
  log_q = (u * np.log(w)) @ u.T
  return -np.trace(big_p @ log_q) + np.trace(big_q)


def problem(seed=0, batch=3, length=5, vocab=11, scale=2.0):
  rng = np.random.default_rng(seed)
  logits = scale * rng.standard_normal((batch, length, vocab))
  targets = rng.integers(0, vocab, (batch, length))
  mask = rng.random((batch, length)) < 0.7
  mask[0, 0] = True
  return logits, targets, mask


@pytest.mark.parametrize("mu", [1e-3, 0.1, 1.0])
def test_value_matches_the_v_by_v_reference(x64, mu):
  logits, targets, mask = problem()
  got = language.matrix_cross_entropy(jnp.asarray(logits), targets, mask, mu=mu)
  np.testing.assert_allclose(float(got), reference_mce(logits, targets, mask, mu),
                             rtol=1e-10, atol=1e-10)


def test_gradient_matches_the_reference_by_central_differences(x64):
  logits, targets, mask = problem(seed=1, batch=2, length=4, vocab=7)
  mu = 0.05
  grad = np.asarray(jax.jit(jax.grad(lambda x: language.matrix_cross_entropy(
      x, targets, mask, mu=mu)))(jnp.asarray(logits)))
  eps = 1e-6
  numeric = np.zeros_like(logits)
  for index in np.ndindex(logits.shape):
    up, down = logits.copy(), logits.copy()
    up[index] += eps
    down[index] -= eps
    numeric[index] = (reference_mce(up, targets, mask, mu)
                      - reference_mce(down, targets, mask, mu)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
  # Masked positions get no gradient; the ones that count do.
  assert np.all(grad[~mask] == 0) and np.abs(grad[mask]).sum() > 0


def test_gradient_is_finite_and_exact_at_repeated_predictions(x64):
  """Identical rows give a Gram of rank 1 (all other eigenvalues tie at 0): plain
  autodiff through eigh divides by zero there."""
  rng = np.random.default_rng(2)
  row = rng.standard_normal(6)
  logits = np.tile(row, (5, 1))
  targets = np.array([0, 1, 1, 3, 0])
  mask = np.ones(5, bool)
  grad = np.asarray(jax.jit(jax.grad(lambda x: language.matrix_cross_entropy(
      x, targets, mask, mu=0.1)))(jnp.asarray(logits)))
  assert np.all(np.isfinite(grad))
  eps = 1e-6
  direction = rng.standard_normal(logits.shape)
  numeric = (reference_mce(logits + eps * direction, targets, mask, 0.1)
             - reference_mce(logits - eps * direction, targets, mask, 0.1)) / (2 * eps)
  np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-6)


def test_invariant_to_the_order_of_positions(x64):
  logits, targets, mask = problem(seed=3, batch=4, length=6)
  order = np.random.default_rng(0).permutation(24)
  flat = lambda a: a.reshape(24, *a.shape[2:])
  a = language.matrix_cross_entropy(logits, targets, mask, mu=0.01)
  b = language.matrix_cross_entropy(flat(logits)[order], flat(targets)[order],
                                    flat(mask)[order], mu=0.01)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-12)


def test_padding_changes_nothing(x64):
  logits, targets, mask = problem(seed=4)
  loss_of = jax.jit(lambda x, t, m: language.lm_loss(x, t, m, w=0.5, mu=0.01))
  loss, aux = loss_of(logits, targets, mask)
  # Different values at padded positions, and more padding appended.
  rng = np.random.default_rng(9)
  noisy = np.where(mask[..., None], logits, 50 * rng.standard_normal(logits.shape))
  other_targets = np.where(mask, targets, rng.integers(0, 11, targets.shape))
  padded = np.concatenate([noisy, rng.standard_normal((3, 4, 11))], axis=1)
  padded_targets = np.concatenate([other_targets, np.zeros((3, 4), int)], axis=1)
  padded_mask = np.concatenate([mask, np.zeros((3, 4), bool)], axis=1)
  loss2, aux2 = loss_of(padded, padded_targets, padded_mask)
  np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-12)
  np.testing.assert_allclose(float(aux2["mce"]), float(aux["mce"]), rtol=1e-12)
  grad = jax.jit(jax.grad(lambda x: loss_of(x, padded_targets, padded_mask)[0]))(
      jnp.asarray(padded))
  assert np.all(np.asarray(grad)[~padded_mask] == 0)


def test_lm_loss_is_ce_plus_w_mce_and_w_zero_is_plain_ce(x64):
  logits, targets, mask = problem(seed=5)
  ce = language.cross_entropy(logits, targets, mask)
  # The definition of CE over the positions that count.
  flat_logits = logits.reshape(-1, 11)[mask.reshape(-1)]
  log_p = flat_logits - np.log(np.exp(flat_logits).sum(-1, keepdims=True))
  want_ce = -np.mean(log_p[np.arange(len(log_p)), targets.reshape(-1)[mask.reshape(-1)]])
  np.testing.assert_allclose(float(ce), want_ce, rtol=1e-12)
  mce = reference_mce(logits, targets, mask, 0.02)
  loss, aux = language.lm_loss(logits, targets, mask, w=0.3, mu=0.02)
  np.testing.assert_allclose(float(loss), want_ce + 0.3 * mce, rtol=1e-10)
  np.testing.assert_allclose(float(aux["mce"]), mce, rtol=1e-10)
  # w = 0: the gradient is the cross-entropy's, MCE is still reported.
  g0 = jax.grad(lambda x: language.lm_loss(x, targets, mask, w=0.0, mu=0.02)[0])(logits)
  g_ce = jax.grad(lambda x: language.cross_entropy(x, targets, mask))(logits)
  np.testing.assert_allclose(np.asarray(g0), np.asarray(g_ce), rtol=1e-12)
  assert float(language.lm_loss(logits, targets, mask, w=0.0, mu=0.02)[1]["mce"]) == \
      pytest.approx(mce, rel=1e-10)


def test_mce_is_smallest_when_predictions_match_the_targets():
  """MCE(P, Q) is minimised over Q at Q = P: one-hot-like predictions of the targets
  score lower than uniform or wrong ones, and reach -tr(P log P) + tr(P) (the ridge
  aside). (MCE sees only second moments: wrong one-hot predictions with the targets'
  frequencies shifted score better than uniform ones.)"""
  targets = np.array([[0, 1, 2, 2, 3, 1]])
  right = 30.0 * np.eye(5)[targets]
  wrong = 30.0 * np.eye(5)[(targets + 1) % 5]
  uniform = np.zeros((1, 6, 5))
  values = [float(language.matrix_cross_entropy(x, targets, mu=1e-3))
            for x in (right, uniform, wrong)]
  assert values[0] < min(values[1:])
  freq = np.bincount(targets[0], minlength=5) / 6
  entropy = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
  assert values[0] == pytest.approx(entropy + 1.0, abs=1e-2)


def test_bf16_logits_are_computed_in_float32():
  logits, targets, mask = problem(seed=6, vocab=13)
  low = jnp.asarray(logits, jnp.bfloat16)
  got = jax.jit(lambda x: language.matrix_cross_entropy(x, targets, mask, mu=0.01))(low)
  assert got.dtype == jnp.float32
  want = reference_mce(np.asarray(low.astype(jnp.float32)), targets, mask, 0.01)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  grad = jax.jit(jax.grad(lambda x: language.lm_loss(x, targets, mask, w=1.0,
                                                     mu=0.01)[0]))(low)
  assert grad.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grad)))


def test_sharded_equals_unsharded(data_mesh):
  from jax.sharding import NamedSharding, PartitionSpec
  devices = data_mesh.devices.size
  logits, targets, mask = problem(seed=7, batch=devices, length=6, vocab=17)
  logits = logits.astype(np.float32)
  fn = jax.jit(jax.value_and_grad(
      lambda x, t, m: language.lm_loss(x, t, m, w=1.0, mu=0.01)[0]))
  want_loss, want_grad = fn(logits, targets, mask)
  shard = lambda a: jax.device_put(a, NamedSharding(data_mesh, PartitionSpec("data")))
  loss, grad = fn(shard(logits), shard(targets), shard(mask))
  assert len(grad.sharding.device_set) == devices
  # Sums over the batch run in another order across devices: float32 rounding only.
  np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(want_grad), rtol=1e-4,
                             atol=1e-6 * np.abs(np.asarray(want_grad)).max())


def test_a_32k_vocabulary_has_no_v_by_v_array():
  """V = 32,000: the value and gradient program holds no array with two axes of size V
  (a V x V float32 matrix would be 4 GB), and it runs."""
  vocab, positions = 32_000, 64
  rng = np.random.default_rng(8)
  logits = jnp.asarray(rng.standard_normal((2, positions // 2, vocab)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, vocab, (2, positions // 2)))
  fn = jax.value_and_grad(lambda x: language.lm_loss(x, targets, w=1.0, mu=1e-4)[0])
  jaxpr = jax.make_jaxpr(fn)(logits)

  def shapes(jaxpr):
    for eqn in jaxpr.eqns:
      for var in eqn.outvars:
        yield getattr(var.aval, "shape", ())
      for param in eqn.params.values():
        inner = getattr(param, "jaxpr", None)
        if inner is not None:
          yield from shapes(getattr(inner, "jaxpr", inner))

  found = list(shapes(jaxpr.jaxpr))
  assert found and max(int(np.prod(s)) for s in found) <= positions * vocab
  assert not any(sum(d == vocab for d in s) >= 2 for s in found)
  loss, grad = jax.jit(fn)(logits)
  assert np.isfinite(float(loss)) and grad.shape == logits.shape


@pytest.mark.parametrize("kwargs, message", [
    ({"mu": 0.0}, "mu must be a positive number"),
    ({"mu": -1.0}, "mu must be a positive number"),
    ({"w": -0.5}, "w must be a number >= 0"),
])
def test_bad_hyperparameters_are_named(kwargs, message):
  logits, targets, mask = problem()
  with pytest.raises(ValueError, match=message):
    language.lm_loss(logits, targets, mask, **kwargs)


def test_bad_shapes_are_named():
  logits, targets, mask = problem()
  with pytest.raises(ValueError, match="targets must have the logits' shape"):
    language.matrix_cross_entropy(logits, targets[:, :-1], mu=0.1)
  with pytest.raises(ValueError, match="mask must have the targets' shape"):
    language.matrix_cross_entropy(logits, targets, mask[:, :-1], mu=0.1)
  with pytest.raises(ValueError, match="integer token ids"):
    language.matrix_cross_entropy(logits, targets.astype(float), mu=0.1)
