"""Test set-up: 8 simulated CPU devices, float32/float64 parametrisation, a data mesh."""

import os

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache for the whole test session (xdist workers and the runs they
# start in subprocesses alike): a program compiled once, e.g. the runlocal step that the
# resume, kill and notebook tests each start again, is loaded by the next process. Runs
# keep it (their config.compilation_cache_dir is None) unless a test sets their own.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    __import__("tempfile").gettempdir(),
    "mssl-test-xla-cache-" + os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))))

import contextlib
import pathlib
import sys

# tests/ mirrors mssl/ (tests/data/test_pipeline.py, ...), imported with
# --import-mode=importlib: the shared helpers (helpers.py, fake_job.py, losses/reference.py)
# are found from every folder through this one entry of the path.
TESTS = pathlib.Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
  sys.path.insert(0, str(TESTS))

import jax
import numpy as np
import pytest


def enable_x64(on: bool = True):
  """A context manager that turns float64 on (jax.enable_x64 moved in 2025)."""
  manager = getattr(jax, "enable_x64", None)
  if manager is None:  # older jax
    from jax.experimental import enable_x64 as manager  # type: ignore
    return manager() if on else contextlib.nullcontext()
  return manager(on)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
  """Runs a test once in float32 and once in float64 (x64 on for that test only)."""
  if request.param == "float64":
    with enable_x64(True):
      yield np.float64
  else:
    yield np.float32


@pytest.fixture
def x64():
  with enable_x64(True):
    yield


@pytest.fixture(scope="session")
def data_mesh():
  """A 1-D mesh over every (simulated) device, axis name ``data``."""
  devices = np.array(jax.devices())
  if devices.size < 2:
    pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return jax.sharding.Mesh(devices, ("data",))


def tolerance(dtype, f64: float, f32: float) -> float:
  return f64 if np.dtype(dtype) == np.float64 else f32


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """The embedded dataset, prepared once for the session."""
  from mssl import data
  root = tmp_path_factory.mktemp("tfds_train")
  data.load_split("mssl_shapes/32", "train", data_dir=str(root))
  return str(root)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
  """The embedded dataset, built once per test session through the real tfds path."""
  from mssl import data
  root = tmp_path_factory.mktemp("tfds")
  data.load_split("mssl_shapes/32", "train", data_dir=str(root))
  return str(root)


@pytest.fixture(scope="module")
def tiny_output():
  """One forward pass of a tiny MAE (tests/losses/test_masked.py, tests/models/test_mae.py,
  tests/steps/test_masked_image.py)."""
  from helpers import tiny_mae
  model = tiny_mae()
  images = jax.random.uniform(jax.random.key(0), (6, 16, 16, 3))
  params = model.init(jax.random.key(1), images, jax.random.key(2), train=False)
  return model.apply(params, images, jax.random.key(3), train=False)


@pytest.fixture(scope="module")
def pretrained(tfds_dir, tmp_path_factory):
  """Short M-MAE, U-MAE and MAE runs from the same initialisation and data
  (tests/trainers/test_masked_image.py, tests/trainers/test_finetune.py)."""
  from helpers import MASKED_IMAGE_RUNS, masked_config
  from mssl import train, writers
  runs = {}
  for objective in MASKED_IMAGE_RUNS:
    workdir = tmp_path_factory.mktemp(objective)
    config = masked_config(objective, tfds_dir, 40, **{"optimizer.base_lr": 3e-3})
    results = train.train_and_evaluate(config, str(workdir))
    runs[objective] = (workdir, results,
                       writers.read_jsonl(os.path.join(workdir, "metrics.jsonl")))
  return runs
