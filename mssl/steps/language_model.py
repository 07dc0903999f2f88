"""The language-model step: next-token CE (+ ``w`` MCE) on the answer tokens, and greedy
decoding (no TensorFlow; the trainer that runs it is :mod:`mssl.trainers.language_model`).

A batch is ``{"tokens": (N, L), "mask": (N, L)}`` from :mod:`mssl.data.arithmetic`: the
prompt left-padded to ``prompt_length``, the answer after it, ``mask`` 1 on the answer's
tokens. The model reads ``tokens[:, :-1]``; the loss counts the predictions of the answer
tokens only (the prompt is given, as in supervised fine-tuning on question-answer pairs,
MetaMath's recipe), so its positions are the fixed slice ``prompt_length - 1 ...``:
``B x answer_length`` positions, the size of MCE's ``m x m`` Gram
(:func:`mssl.losses.language.lm_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mssl.losses import language
from mssl.steps.common import apply_gradients


def answer_slice(tokens, mask, prompt_length: int):
  """``(inputs, targets, target_mask)``: the model's input and, for the positions that
  predict the answer region, the targets and which of them count."""
  return tokens[:, :-1], tokens[:, prompt_length:], mask[:, prompt_length:]


def loss_and_parts(model, params, tokens, mask, *, prompt_length: int, w: float,
                   mu: float):
  inputs, targets, target_mask = answer_slice(tokens, mask, prompt_length)
  logits = model.apply({"params": params}, inputs)[:, prompt_length - 1:]
  loss, aux = language.lm_loss(logits, targets, target_mask, w=w, mu=mu)
  correct = (jnp.argmax(logits, -1) == targets) * target_mask
  aux["token_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(target_mask), 1)
  return loss, aux


def make_train_step(config, model, tx, schedule, *, prompt_length: int):
  w, mu = float(config.loss.w), float(config.loss.mu)

  def train_step(state, batch):
    def loss_fn(params):
      return loss_and_parts(model, params, batch["tokens"], batch["mask"],
                            prompt_length=prompt_length, w=w, mu=mu)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, update_metrics = apply_gradients(state, grads, tx, schedule)
    metrics = {"loss": loss, "loss/ce": aux["ce"], "loss/mce": aux["mce"],
               "train_token_accuracy": aux["token_accuracy"], **update_metrics}
    return new_state, metrics

  return train_step


def greedy_answers(model, params, tokens, *, prompt_length: int):
  """The answer region of ``tokens`` (N, L) filled by greedy decoding from the prompt:
  position ``prompt_length + k`` gets the argmax of the model's prediction after the
  prompt and the ``k`` tokens it chose before. One compiled loop of ``L - 1`` one-token
  calls of the model in decode mode (keys and values cached,
  :func:`mssl.models.causal_lm.init_cache`): the prompt's tokens are fed, the answer's
  chosen."""
  from mssl.models.causal_lm import init_cache
  decoder = model.clone(decode=True)
  n, length = tokens.shape

  def body(t, carry):
    cache, seq = carry
    logits, variables = decoder.apply(
        {"params": params, "cache": cache},
        jax.lax.dynamic_slice_in_dim(seq, t, 1, axis=1), start=t, mutable=["cache"])
    chosen = jnp.argmax(logits[:, 0], -1).astype(seq.dtype)
    given = jax.lax.dynamic_index_in_dim(seq, t + 1, 1, keepdims=False)
    nxt = jnp.where(t + 1 >= prompt_length, chosen, given)
    return variables["cache"], jax.lax.dynamic_update_index_in_dim(seq, nxt, t + 1, 1)

  start = tokens.at[:, prompt_length:].set(0)
  _, seq = jax.lax.fori_loop(0, length - 1, body, (init_cache(decoder, n), start))
  return seq[:, prompt_length:]
