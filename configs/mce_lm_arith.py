"""Matrix cross-entropy for language models, in miniature: a small causal LM trained on
generated arithmetic word problems with CE alone or CE + w * MCE.

    python -m mssl.main --config=configs/mce_lm_arith.py --workdir=/tmp/lm_mce
    python -m mssl.main --config=configs/mce_lm_arith.py:ce --workdir=/tmp/lm_ce

The Matrix-SSL paper fine-tunes a 7B model on MetaMathQA with CE + MCE and reports GSM8K
72.3% against 69.2% with CE alone; this is the same comparison at CPU scale
(``mssl.losses.language``; ``docs/methods.md``). The problems are two-step word problems
with step-by-step answers (``mssl.data.arithmetic``), character tokens; the loss counts the
answer tokens; the run reports the exact match of the final answer under greedy decoding
on held-out problems (``eval/exact_match``), and checkpoints and resumes like every run.

Arguments: ``ce`` (w = 0, the baseline), ``w=<float>`` (MCE's weight; default 1.0, chosen
before any run), ``steps=<int>``, ``runlocal`` (6 steps on 512 problems, for tests). ``w``
and ``mu`` were not tuned on the held-out problems. The default, 1,500 steps of batch 32
with the nano model, took 9 minutes on 2 CPU cores shared with other jobs (less on a quiet
machine); ``benchmarks/language_model.py`` runs both arms over 3 seeds.
"""

import ml_collections

from configs import common


def get_config(arg=None):
  words = common.parse_arg(arg, ce=bool, w=float, steps=int, runlocal=bool)
  if "ce" in words and "w" in words:
    raise common.ConfigArgError("config arguments 'ce' and 'w=...' conflict: 'ce' is "
                                "w=0; give one of them.")
  c = ml_collections.ConfigDict()
  c.mode = "language_model"
  c.seed = 0                     # initialisation and data order (the problems: problem_seed)
  c.loss = ml_collections.ConfigDict(dict(
      w=0.0 if "ce" in words else words.get("w", 1.0),  # CE + w * MCE
      mu=1e-3))                  # the ridge of Q = (1/m) sum p p^T + mu I
  c.model = ml_collections.ConfigDict(dict(
      name="causal_lm", size="nano",  # mssl.models.LM_SIZES (nano: 2 blocks of width 64)
      dtype="float32", attention="auto"))
  c.data = ml_collections.ConfigDict(dict(
      dataset="arithmetic",      # mssl.data.arithmetic
      problem_seed=0,            # the problems (the same for every config.seed)
      train_problems=20_000,
      eval_problems=500,         # held out: none of their questions is in training
      prefetch=2))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", base_lr=1e-3, scale_by_batch=False, weight_decay=0.1,
      momentum=0.9, trust_coefficient=0.001, b1=0.9, b2=0.98,
      warmup_epochs=0.25))       # linear warm-up, then cosine decay to 0
  c.batch_size = 32
  c.total_steps = words.get("steps", 1500)
  c.num_epochs = -1.0            # unused: total_steps sets the length
  common.loop_fields(c)
  c.log_every = 50
  c.eval_every = c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.eval = ml_collections.ConfigDict(dict(batch_size=250))
  if "runlocal" in words:
    c.data.train_problems, c.data.eval_problems = 512, 16
    c.batch_size = 16
    c.total_steps = words.get("steps", 6)
    c.log_every, c.eval_every, c.checkpoint_every = 2, 3, 3
    c.eval.batch_size = 16
  return c
