"""Arithmetic word problems with step-by-step answers, made by the code from a seed.

GSM8K in miniature for the matrix-cross-entropy language-model demo: two-step problems
(add then subtract, multiply then subtract, multiply then add) about people and things,
each answer one computation per step and the final number after ``#``::

    Q: Mia has 14 pens. She buys 6 more, then gives away 9. How many pens now?
    A: 14+6=20. 20-9=11. #11

Tokens are characters (:data:`VOCAB`, pad id 0, end-of-answer id 1). A sequence is the
prompt left-padded to ``prompt_length``, then the answer, the end token and right padding
to ``answer_length``, so every answer starts at the same position: a batch's target
positions are one fixed slice, and greedy decoding fills it position by position. The
training problems come from ``seed``, the held-out ones from another stream, and no
held-out question appears in the training set. No download, pure numpy.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

PAD, END = 0, 1
_CHARS = (" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
          ".,?!:;'=+-*/#()")
VOCAB = ("\x00", "\n") + tuple(_CHARS)
VOCAB_SIZE = len(VOCAB)
_INDEX = {c: i for i, c in enumerate(VOCAB)}

PROMPT_LENGTH = 84  # the longest prompt is 80 characters
ANSWER_LENGTH = 26  # the longest answer is 24, plus the end token
HELD_OUT_STREAM = 1_000_003  # the held-out problems' seed offset

_NAMES = (("Mia", "She"), ("Leo", "He"), ("Ava", "She"), ("Sam", "He"), ("Zoe", "She"),
          ("Max", "He"), ("Ivy", "She"), ("Tom", "He"), ("Eva", "She"), ("Ben", "He"))
_THINGS = ("pens", "apples", "cards", "shells", "books", "coins", "eggs", "stamps",
           "beads", "cups")


@dataclasses.dataclass(frozen=True)
class Problem:
  question: str
  answer: str       # the step-by-step answer, ending in "#<final>"
  final: int


def _problem(rng: np.random.Generator) -> Problem:
  (name, pronoun), thing = _NAMES[rng.integers(len(_NAMES))], _THINGS[
      rng.integers(len(_THINGS))]
  kind = rng.integers(3)
  if kind == 0:  # a + b - c
    a, b = int(rng.integers(2, 30)), int(rng.integers(2, 20))
    c = int(rng.integers(1, a + b))
    question = (f"{name} has {a} {thing}. {pronoun} buys {b} more, then gives away {c}. "
                f"How many {thing} now?")
    answer = f"{a}+{b}={a + b}. {a + b}-{c}={a + b - c}. #{a + b - c}"
    final = a + b - c
  elif kind == 1:  # a * b - c
    a, b = int(rng.integers(2, 10)), int(rng.integers(2, 10))
    c = int(rng.integers(1, a * b))
    question = (f"{name} buys {a} bags of {b} {thing} and uses {c}. How many {thing} "
                "are left?")
    answer = f"{a}*{b}={a * b}. {a * b}-{c}={a * b - c}. #{a * b - c}"
    final = a * b - c
  else:  # a + a * b
    a, b = int(rng.integers(2, 20)), int(rng.integers(2, 6))
    question = (f"{name} has {a} {thing}. A friend has {b} times as many. How many "
                f"{thing} in all?")
    answer = f"{a}*{b}={a * b}. {a}+{a * b}={a + a * b}. #{a + a * b}"
    final = a + a * b
  return Problem(question, answer, final)


def problems(count: int, seed: int) -> list[Problem]:
  """``count`` problems from ``seed`` (the same seed gives the same list)."""
  rng = np.random.default_rng(seed)
  return [_problem(rng) for _ in range(count)]


def held_out_problems(count: int, seed: int, exclude: list[Problem]) -> list[Problem]:
  """``count`` problems of another stream whose questions are not in ``exclude``."""
  seen = {p.question for p in exclude}
  rng = np.random.default_rng(seed + HELD_OUT_STREAM)
  out = []
  while len(out) < count:
    p = _problem(rng)
    if p.question not in seen:
      seen.add(p.question)
      out.append(p)
  return out


def encode_text(text: str) -> list[int]:
  unknown = sorted(set(text) - set(_INDEX))
  if unknown:
    raise ValueError(f"characters outside the vocabulary: {unknown!r}")
  return [_INDEX[c] for c in text]


def decode(ids) -> str:
  """Token ids -> text, stopping at the first end token (pads dropped)."""
  out = []
  for i in np.asarray(ids).tolist():
    if i == END:
      break
    if i != PAD:
      out.append(VOCAB[i])
  return "".join(out)


def encode(batch: list[Problem], prompt_length: int = PROMPT_LENGTH,
           answer_length: int = ANSWER_LENGTH) -> np.ndarray:
  """(N, prompt_length + answer_length) int32 token ids; see the module docstring."""
  out = np.full((len(batch), prompt_length + answer_length), PAD, np.int32)
  for row, p in enumerate(batch):
    prompt = encode_text(p.question + " A:")
    answer = encode_text(p.answer) + [END]
    if len(prompt) > prompt_length or len(answer) > answer_length:
      raise ValueError(f"problem {p.question!r} needs prompt_length >= {len(prompt)} and "
                       f"answer_length >= {len(answer)}; got {prompt_length}, "
                       f"{answer_length}.")
    out[row, prompt_length - len(prompt):prompt_length] = prompt
    out[row, prompt_length:prompt_length + len(answer)] = answer
  return out


def answer_mask(tokens: np.ndarray, prompt_length: int = PROMPT_LENGTH) -> np.ndarray:
  """1 where a token belongs to the answer (its characters and end token), else 0."""
  tokens = np.asarray(tokens)
  region = np.arange(tokens.shape[1]) >= prompt_length
  ended = np.cumsum(tokens == END, axis=1) - (tokens == END)  # ends seen before
  return (region[None, :] & (ended == 0) & (tokens != PAD)).astype(np.int32)


_FINAL = re.compile(r"#(-?\d+)\s*$")


def final_answer(text: str):
  """The integer after the last ``#`` of a generated answer, or None."""
  match = _FINAL.search(text.strip())
  return int(match.group(1)) if match else None


def exact_match(generated, batch: list[Problem]) -> float:
  """The fraction of problems whose generated final answer equals the true one."""
  hits = [final_answer(decode(ids)) == p.final for ids, p in zip(generated, batch)]
  return float(np.mean(hits)) if hits else 0.0
