"""mssl.steps.language_model: the loss counts the answer tokens, aligned with the
predictions that make them; a step lowers it; greedy decoding with the key-value cache
chooses what a full forward pass per token would."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mssl.data import arithmetic
from mssl.models.causal_lm import causal_lm
from mssl.steps import language_model as lm_step
from mssl.steps.state import TrainState

PROMPT = arithmetic.PROMPT_LENGTH


class Oracle:
  """A stand-in model whose logits at position k put all mass on ``tokens[:, k + shift]``."""

  def __init__(self, tokens, shift):
    self.tokens, self.shift = np.asarray(tokens), shift

  def apply(self, variables, inputs):
    target = np.roll(self.tokens, -self.shift, axis=1)[:, :inputs.shape[1]]
    return 40.0 * jax.nn.one_hot(target, arithmetic.VOCAB_SIZE)


def test_the_loss_scores_the_next_answer_token_of_each_position():
  batch = arithmetic.problems(8, seed=0)
  tokens = arithmetic.encode(batch)
  mask = arithmetic.answer_mask(tokens)
  right = lm_step.loss_and_parts(Oracle(tokens, 1), None, tokens, mask,
                                 prompt_length=PROMPT, w=0.0, mu=1e-3)[1]
  assert float(right["ce"]) < 1e-6 and float(right["token_accuracy"]) == 1.0
  late = lm_step.loss_and_parts(Oracle(tokens, 0), None, tokens, mask,
                                prompt_length=PROMPT, w=0.0, mu=1e-3)[1]
  assert float(late["ce"]) > 1.0 and float(late["token_accuracy"]) < 0.3
  inputs, targets, target_mask = lm_step.answer_slice(tokens, mask, PROMPT)
  assert inputs.shape[1] == tokens.shape[1] - 1
  assert target_mask.sum() == sum(len(p.answer) + 1 for p in batch)
  assert [arithmetic.decode(t) for t in targets] == [p.answer for p in batch]


def tiny_setup(w):
  model = causal_lm("nano", vocab_size=arithmetic.VOCAB_SIZE,
                    max_length=PROMPT + arithmetic.ANSWER_LENGTH - 1)
  tokens = arithmetic.encode(arithmetic.problems(16, seed=1))
  params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(tokens[:, :-1]))["params"]
  tx = optax.adam(3e-3)
  import ml_collections
  config = ml_collections.ConfigDict({"loss": {"w": w, "mu": 1e-3}})
  step = jax.jit(lm_step.make_train_step(config, model, tx, lambda s: 3e-3,
                                         prompt_length=PROMPT))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(params), rng=jnp.zeros((2,), jnp.uint32))
  return model, step, state, {"tokens": tokens, "mask": arithmetic.answer_mask(tokens)}


def test_steps_lower_the_loss_and_mce_changes_the_update():
  """CE + MCE steps lower the loss (reported as its two parts); w = 0 is the plain
  cross-entropy: the same CE, another gradient."""
  _, step, state, batch = tiny_setup(1.0)
  _, step0, state0, _ = tiny_setup(0.0)
  _, m0 = step0(state0, batch)
  losses = []
  for _ in range(6):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
    if len(losses) == 1:
      first = metrics
  assert losses[-1] < losses[0] - 0.5
  assert int(state.step) == 6
  np.testing.assert_allclose(float(metrics["loss"]),
                             float(metrics["loss/ce"]) + float(metrics["loss/mce"]),
                             rtol=1e-5)
  assert float(m0["loss"]) == pytest.approx(float(first["loss/ce"]), rel=1e-6)
  assert float(m0["loss/mce"]) == pytest.approx(float(first["loss/mce"]), rel=1e-6)
  assert float(m0["grad_norm"]) != pytest.approx(float(first["grad_norm"]), rel=1e-3)


def test_greedy_decoding_with_the_cache_chooses_what_full_passes_choose():
  model = causal_lm("nano", vocab_size=arithmetic.VOCAB_SIZE, max_length=30)
  tokens = np.asarray(jax.random.randint(jax.random.key(0), (3, 31), 2,
                                         arithmetic.VOCAB_SIZE))
  params = jax.jit(model.init)(jax.random.key(1), jnp.asarray(tokens[:, :-1]))["params"]
  full = jax.jit(lambda x: model.apply({"params": params}, x))
  want = tokens.copy()
  want[:, 12:] = 0
  for k in range(12, 31):  # one full forward pass per chosen token
    want[:, k] = np.argmax(np.asarray(full(jnp.asarray(want[:, :-1])))[:, k - 1], -1)
  got = jax.jit(lambda p, t: lm_step.greedy_answers(model, p, t, prompt_length=12))(
      params, jnp.asarray(tokens))
  np.testing.assert_array_equal(np.asarray(got), want[:, 12:])
