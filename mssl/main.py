"""Entry point: ``python -m mssl.main --config=configs/X.py[:arg] --workdir=DIR``.

Flags, optional multi-host initialisation, then :func:`mssl.train.train_and_evaluate`
(importable on its own, e.g. from a notebook). Any config field can be overridden on the
command line, e.g. ``--config.batch_size=256 --config.optimizer.base_lr=0.3``.
Multi-host: ``--config.distributed.initialize=True`` (arguments from the config fields
``coordinator_address``, ``num_processes``, ``process_id``, or from the environment as
``jax.distributed.initialize`` finds it on TPU VMs and Slurm).
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed(config) -> None:
  """``jax.distributed.initialize`` behind ``config.distributed.initialize``."""
  import jax
  d = config.distributed
  if not d.initialize:
    return
  kwargs = {k: v for k, v in (("coordinator_address", d.coordinator_address),
                              ("num_processes", d.num_processes),
                              ("process_id", d.process_id)) if v is not None}
  try:  # CPU collectives across processes (local multi-process runs); no-op elsewhere
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except Exception:  # pragma: no cover - option absent in some jax versions
    pass
  jax.distributed.initialize(**kwargs)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class _QuietLibraries:
  """Drops INFO records of chatty libraries (Orbax logs every save step by step)."""

  def filter(self, record):
    import logging as std_logging
    return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data only: keep the GPUs for JAX
  config = _CONFIG.value
  initialize_distributed(config)
  from mssl import train
  train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
