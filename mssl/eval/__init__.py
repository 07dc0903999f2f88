"""Evaluation: metrics on frozen features (:mod:`mssl.eval.metrics`, pure functions), the
evaluator that feeds them the eval split during and after training
(:mod:`mssl.eval.evaluator`), and the final table of a run (:mod:`mssl.eval.table`).

Import the modules (``from mssl.eval import metrics``), not this package's name: ``eval``
would shadow Python's built-in in the importing module."""
