"""Trainers: one per kind of run, siblings that share the services below them and never
import each other. :func:`mssl.run.train_and_evaluate` picks one."""
