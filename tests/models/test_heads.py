"""mssl.models.heads: the MLP head, built as the configs state their heads (the published
recipes' parameter counts), and its last BN without affine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models

from helpers import load_config, param_count


@pytest.mark.parametrize("config,head,in_dim,expected", [
    # Linear layers (no bias) + 2 BN (scale, bias) + a BN without affine (no params).
    ("mssl_r50", "projector", 2048, 3 * 2048 * 2048 + 2 * 2 * 2048),
    ("mssl_r50", "predictor", 2048, 2048 * 512 + 2 * 512 + 512 * 2048),
    # With biases: in*h + h + BN(h) + h*out + out.
    ("byol_r18_cifar", "projector", 2048, 2048 * 4096 + 4096 + 2 * 4096 + 4096 * 256 + 256),
    ("byol_r18_cifar", "predictor", 256, 256 * 4096 + 4096 + 2 * 4096 + 4096 * 256 + 256),
    ("simclr_r18_cifar", "projector", 512, 512 * 2048 + 2048 + 2 * 2048 + 2048 * 256 + 256),
    ("frossl_r18_cifar", "projector", 512, 512 * 2048 + 2048 + 2 * 2048 + 2048 * 2048
     + 2048 + 2 * 2048 + 2048 * 1024 + 1024),
])
def test_head_parameter_counts(config, head, in_dim, expected):
  fields = load_config(config)[head].to_dict()
  assert param_count(models.MLPHead(**fields), (2, in_dim)) == expected


def test_heads_output_shapes_and_no_affine_last_bn():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 32)), jnp.float32)
  proj = models.MLPHead(hidden=(16, 16), out=12, bias=False, last_bn=True,
                        last_bn_affine=False)
  variables = proj.init(jax.random.key(0), x)
  out, _ = proj.apply(variables, x, mutable=["batch_stats"])
  assert out.shape == (8, 12)
  assert "out_bn" not in variables["params"] and "out_bn" in variables["batch_stats"]
  # BN without affine in training mode: each output column has mean 0 and variance ~1.
  np.testing.assert_allclose(np.mean(out, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.var(out, 0), 1.0, rtol=1e-3)
