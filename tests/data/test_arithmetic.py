"""mssl.data.arithmetic: the generated word problems are right, reproducible and held out;
the encoding puts every answer at one position and the mask covers exactly the answer."""

import re

import numpy as np
import pytest

from mssl.data import arithmetic


def test_every_answer_step_is_correct_and_ends_in_the_final_number():
  for p in arithmetic.problems(3000, seed=5):
    steps = re.findall(r"(\d+)([+*-])(\d+)=(\d+)\.", p.answer)
    assert len(steps) == 2, p
    for left, op, right, result in steps:
      value = {"+": int(left) + int(right), "-": int(left) - int(right),
               "*": int(left) * int(right)}[op]
      assert value == int(result), p
    assert int(steps[1][3]) == p.final >= 0
    assert arithmetic.final_answer(p.answer) == p.final
    # The numbers of the question are the ones the answer computes with.
    numbers = [int(n) for n in re.findall(r"\d+", p.question)]
    assert int(steps[0][0]) == numbers[0] and int(steps[0][2]) == numbers[1]


def test_a_seed_gives_the_same_problems_and_held_out_ones_are_new():
  train = arithmetic.problems(2000, seed=3)
  assert train == arithmetic.problems(2000, seed=3)
  assert train != arithmetic.problems(2000, seed=4)
  held_out = arithmetic.held_out_problems(300, seed=3, exclude=train)
  assert len(held_out) == 300
  assert not {p.question for p in held_out} & {p.question for p in train}
  assert len({p.question for p in held_out}) == 300
  assert {p.answer.count("*") for p in held_out} == {0, 1}  # every kind appears


def test_encoding_aligns_answers_and_the_mask_covers_answer_and_end_token():
  batch = arithmetic.problems(64, seed=1)
  tokens = arithmetic.encode(batch)
  prompt = arithmetic.PROMPT_LENGTH
  assert tokens.shape == (64, prompt + arithmetic.ANSWER_LENGTH)
  assert tokens.dtype == np.int32
  mask = arithmetic.answer_mask(tokens)
  for row, p in zip(range(64), batch):
    assert arithmetic.decode(tokens[row, :prompt]) == p.question + " A:"
    assert arithmetic.decode(tokens[row, prompt:]) == p.answer
    assert tokens[row, prompt - 1] != arithmetic.PAD  # the prompt ends where answers start
    where = np.flatnonzero(mask[row])
    assert where[0] == prompt and len(where) == len(p.answer) + 1
    assert tokens[row, where[-1]] == arithmetic.END
  assert arithmetic.exact_match(tokens[:, prompt:], batch) == 1.0


def test_exact_match_reads_the_final_number_only():
  batch = arithmetic.problems(3, seed=2)
  good = arithmetic.encode_text(batch[0].answer) + [arithmetic.END]
  wrong_steps_right_final = arithmetic.encode_text(f"1+1=3. #{batch[1].final}")
  no_final = arithmetic.encode_text("1+1=2.")
  generated = [good + [arithmetic.PAD] * 3, wrong_steps_right_final, no_final]
  assert arithmetic.exact_match(generated, batch) == pytest.approx(2 / 3)
  assert arithmetic.final_answer("5+5=10. #10 and more") is None
  assert arithmetic.final_answer("#-4") == -4


def test_bad_text_and_lengths_are_named():
  with pytest.raises(ValueError, match="outside the vocabulary"):
    arithmetic.encode_text("caf\u00e9")
  with pytest.raises(ValueError, match="needs prompt_length >="):
    arithmetic.encode(arithmetic.problems(1, seed=0), prompt_length=10)
