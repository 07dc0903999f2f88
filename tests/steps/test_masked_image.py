"""mssl.steps.masked_image: the logging-only diagnostics of the step and the
reconstructions."""

import jax
import jax.numpy as jnp
import numpy as np

from mssl import matrix
from mssl.steps import masked_image

from helpers import jit_init, load_config, tiny_mae


def test_effective_rank_is_logged_on_logging_steps_only():
  config = load_config("mmae_shapes")
  config.batch_size = 16
  config.log_every = 2
  network = masked_image.build_network(config)
  tx, schedule = masked_image.make_optimizer(config, 5, 5)
  state = masked_image.create_state(masked_image.init_params(network, 32, 0), tx, 0)
  step = jax.jit(masked_image.make_train_step(config, network, tx, schedule, total_steps=5))
  loss_fn = jax.jit(masked_image.make_loss_fn(config, network))
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(16, 32, 32, 3)), jnp.float32)
  for s in range(5):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    _, (_, cls) = loss_fn(state.params, images, key)
    state, metrics = step(state, {"views": (images,)})
    rank = float(metrics["effective_rank_cls"])
    if (s + 1) % 2 == 0 or s + 1 == 5:   # what the loop writes
      np.testing.assert_allclose(rank, float(matrix.effective_rank(cls)), rtol=1e-5)
      assert 1.0 < rank <= 16.0
    else:
      assert np.isnan(rank)
    assert np.isfinite(float(metrics["loss"]))


def test_reconstructions_are_images_in_range(tiny_output):
  network = masked_image.MaskedImageNetwork(tiny_mae())
  images = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  params = jit_init(network, jax.random.key(0), images, jax.random.key(1), train=False)["params"]
  out = masked_image.reconstructions(network, params, images)
  assert set(out) == {"original", "masked", "reconstruction"}
  for value in out.values():
    assert value.shape == images.shape and value.min() >= 0 and value.max() <= 1
  hidden = out["masked"] == 0.5
  assert 0.6 < hidden.mean() < 0.9  # 12 of 16 patches hidden (some pixels equal 0.5 anyway)
  visible = ~hidden.all(-1)
  np.testing.assert_allclose(out["reconstruction"][visible], images[visible], atol=1e-5)
