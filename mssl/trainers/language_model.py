"""Training a small causal language model with CE or CE + w * MCE (``configs/mce_lm_arith.py``).

    python -m mssl.main --config=configs/mce_lm_arith.py --workdir=DIR

The problems are :mod:`mssl.data.arithmetic`'s (``config.data.problem_seed``; the same for
every ``config.seed``), fed in a seeded order that any input position rebuilds, so a
resumed run sees the batches an uninterrupted one would. The step is
:mod:`mssl.steps.language_model`'s and the loop :mod:`mssl.loop`'s (checkpoints, resume,
non-finite checks, logs). The evaluation, every ``eval_every`` steps and at the end, decodes
the held-out problems greedily and reports the exact match of their final answers
(``eval/exact_match``) with the teacher-forced CE and MCE on them (``eval/ce``,
``eval/mce``); ``results.json`` holds the last one.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from mssl import loop, optim, sharding, writers
from mssl.data import arithmetic
from mssl.models.causal_lm import causal_lm
from mssl.steps import language_model as lm_step
from mssl.steps import state as state_lib

NO_DECAY = ("pos_embedding", "embedding")


def batch_order(num_problems: int, batch_size: int, seed: int, steps: int) -> np.ndarray:
  """(steps, batch_size) problem indices: epoch after epoch, each a fresh permutation
  drawn from ``seed`` and the epoch's number (no problem twice in an epoch)."""
  epochs = -(-steps * batch_size // num_problems)
  order = np.concatenate([np.random.default_rng([seed, e]).permutation(num_problems)
                          for e in range(epochs)])
  return order[:steps * batch_size].reshape(steps, batch_size)


def build(config):
  """``(model, train_tokens, eval_problems, eval_tokens)`` of ``config``."""
  train = arithmetic.problems(config.data.train_problems, config.data.problem_seed)
  held_out = arithmetic.held_out_problems(config.data.eval_problems,
                                          config.data.problem_seed, exclude=train)
  length = arithmetic.PROMPT_LENGTH + arithmetic.ANSWER_LENGTH
  model = causal_lm(config.model.size, vocab_size=arithmetic.VOCAB_SIZE,
                    max_length=length - 1, dtype=jnp.dtype(config.model.dtype),
                    attention=config.model.attention)
  return model, arithmetic.encode(train), held_out, arithmetic.encode(held_out)


def make_dataset_factory(config, tokens: np.ndarray, total_steps: int):
  """``position -> tf.data.Dataset`` of this process's rows of the global batches from
  ``position`` on (``{"tokens", "mask"}``, int32)."""
  import tensorflow as tf
  order = batch_order(len(tokens), config.batch_size, config.seed, total_steps)
  local = config.batch_size // jax.process_count()
  order = order[:, jax.process_index() * local:(jax.process_index() + 1) * local]
  mask = arithmetic.answer_mask(tokens)

  def make(position: int):
    table = {"tokens": tf.constant(tokens), "mask": tf.constant(mask)}
    rows = tf.data.Dataset.from_tensor_slices(order[position:])
    return rows.map(lambda i: {k: tf.gather(v, i) for k, v in table.items()}).prefetch(2)

  return make


def make_evaluator(config, model, problems, tokens):
  """``state -> {"eval/exact_match", "eval/ce", "eval/mce"}`` on the held-out problems."""
  prompt = arithmetic.PROMPT_LENGTH
  w, mu = float(config.loss.w), float(config.loss.mu)
  decode = jax.jit(lambda params, t: lm_step.greedy_answers(model, params, t,
                                                            prompt_length=prompt))
  parts = jax.jit(lambda params, t, m: lm_step.loss_and_parts(
      model, params, t, m, prompt_length=prompt, w=w, mu=mu)[1])
  mask = arithmetic.answer_mask(tokens)

  def evaluate(state):
    params = state.params
    size = config.eval.batch_size
    answers = [np.asarray(decode(params, tokens[i:i + size]))
               for i in range(0, len(tokens), size)]
    # CE and MCE over batches of the training batch's size: MCE is a statistic of a
    # batch (its m x m Gram), so it is measured as training measures it.
    size = config.batch_size
    parts_of = [(parts(params, tokens[i:i + size], mask[i:i + size]), len(tokens[i:i + size]))
                for i in range(0, len(tokens), size)]
    mean = lambda key: sum(float(aux[key]) * n for aux, n in parts_of) / len(tokens)
    return {"eval/exact_match": arithmetic.exact_match(np.concatenate(answers), problems),
            "eval/ce": mean("ce"), "eval/mce": mean("mce")}

  return evaluate


def train_and_evaluate(config, workdir: str) -> dict:
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh()
  model, train_tokens, held_out, eval_tokens = build(config)
  total_steps = config.total_steps
  steps_per_epoch = max(1, len(train_tokens) // config.batch_size)
  params = model.init(jax.random.key(config.seed), jnp.asarray(train_tokens[:2, :-1]))[
      "params"]
  tx, schedule = optim.from_config(config, total_steps, steps_per_epoch, no_decay=NO_DECAY)
  state = jax.device_put(state_lib.create(params, tx, config.seed),
                         sharding.replicated(mesh))
  train_step = loop.jit_train_step(lm_step.make_train_step(
      config, model, tx, schedule, prompt_length=arithmetic.PROMPT_LENGTH), mesh)
  objective = "ce" if config.loss.w == 0 else f"ce+{config.loss.w:g}*mce"
  writer = writers.create_writer(workdir, is_main=is_main)
  job = loop.Job(objective=objective, state=state, train_step=train_step,
                 make_data=make_dataset_factory(config, train_tokens, total_steps),
                 evaluate=make_evaluator(config, model, held_out, eval_tokens),
                 total_steps=total_steps,
                 run_info={"total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                           "train_problems": len(train_tokens),
                           "eval_problems": len(eval_tokens),
                           "vocab_size": arithmetic.VOCAB_SIZE,
                           "sequence_length": int(train_tokens.shape[1])})
  outcome = loop.run(config, workdir, job, mesh, writer)
  writer.close()
  results = {"steps": int(outcome.state.step), "train_seconds": outcome.train_seconds,
             **outcome.eval_metrics}
  if outcome.already_finished:
    return loop.read_results(workdir) or results
  if not outcome.finished:
    return {**results, "stopped_early": True}
  loop.write_results(workdir, results)
  if is_main:
    print(f"exact match {100 * results['eval/exact_match']:.2f}% on "
          f"{len(eval_tokens)} held-out problems ({objective}, {results['steps']} steps)")
  return results
