"""Test set-up: 8 simulated CPU devices, float32/float64 parametrisation, a data mesh."""

import os
import subprocess
import sys

# XLA's CPU compiler, set for speed of compiling: the tests' programs are tiny, so
# compiling is what they cost. benchmarks/compile_time.py (2-core Xeon, median of 3, ~30
# loss, model and eager-op programs; benchmarks/results/compile_time_cpu.json): 19.6 s at
# XLA's defaults, 12.2 s at LLVM -O0, 8.1 s with XLA's elemental emitters instead of the
# fusion emitters, 7.9 s with one LLVM module per program instead of several compiled in
# parallel (two xdist workers already fill the cores). Fast tier: 5 min 27 s -> 4 min 8 s.
# Tolerances hold under any of these (other rounding, as on another CPU; the fast tier's
# MSSL_TOLERANCE_AUDIT under them: no order-dependent comparison above 0.35 of its bound);
# runs that measure learning pass XLA_FLAGS="" (-O0 code trains the ResNet several times
# slower).
SPEED_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
               "--xla_cpu_parallel_codegen_split_count=1")


def fast_compile_flags() -> str:
  """SPEED_FLAGS if this jaxlib knows them all, else -O0 alone. XLA aborts the process on
  a flag it does not know, and flags come and go between releases, so they are tried
  once, in a child process, and the answer reaches the xdist workers and the runs the
  tests start through MSSL_TEST_FAST_COMPILE."""
  known = os.environ.get("MSSL_TEST_FAST_COMPILE")
  if known is None:
    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(2))"
    kept = [SPEED_FLAGS[0]]  # every jaxlib has it
    others = " ".join(SPEED_FLAGS[1:])
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{kept[0]} {others}")
    if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                      timeout=300).returncode == 0:
      kept += SPEED_FLAGS[1:]
    known = os.environ["MSSL_TEST_FAST_COMPILE"] = " ".join(kept)
  return known


# Must happen before jax initialises its backends: 8 simulated devices, fast compiling.
if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 " + fast_compile_flags()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache for the whole test session (xdist workers and the runs they
# start in subprocesses alike): a program compiled once, e.g. the runlocal step that the
# resume, kill and notebook tests each start again, is loaded by the next process. Runs
# keep it (their config.compilation_cache_dir is None) unless a test sets their own.
# The process that makes it (pytest itself; xdist workers inherit its environment) removes
# it when the session ends (pytest_sessionfinish below): ~30 MB a session.
SESSION_CACHE = None if "JAX_COMPILATION_CACHE_DIR" in os.environ else os.path.join(
    __import__("tempfile").gettempdir(), f"mssl-test-xla-cache-{os.getpid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", SESSION_CACHE or "")
# The runs the tests start cache every program, not only those that took 1 s to compile
# (jax's default): the resume, signal and README tests start the same run in several
# processes, and a run's hundreds of small programs (evaluation, checkpoint slicing)
# cost more to compile than to load (resume in a new process: 49 s -> 44 s measured).
# The test processes themselves keep the default below: they seldom compile the same
# program twice, and writing every one cost 5% (tests/losses/test_registry.py).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import contextlib
import pathlib

# tests/ mirrors mssl/ (tests/data/test_pipeline.py, ...), imported with
# --import-mode=importlib: the shared helpers (helpers.py, fake_job.py, losses/reference.py)
# are found from every folder through this one entry of the path.
TESTS = pathlib.Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
  sys.path.insert(0, str(TESTS))

import jax
import numpy as np
import pytest

jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def enable_x64(on: bool = True):
  """A context manager that turns float64 on (jax.enable_x64 moved in 2025)."""
  manager = getattr(jax, "enable_x64", None)
  if manager is None:  # older jax
    from jax.experimental import enable_x64 as manager  # type: ignore
    return manager() if on else contextlib.nullcontext()
  return manager(on)


def pytest_sessionfinish(session, exitstatus):
  """The session's XLA cache goes with it (only the process that made it removes it)."""
  if SESSION_CACHE is not None:
    import shutil
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  """The longest tests first: xdist hands tests out in this order, so the long runs start
  at once instead of leaving one worker busy at the end. ``@pytest.mark.slow(seconds=N)``
  states a slow test's measured duration (2-core CPU, full suite); the sort is stable."""
  def cost(item):
    slow = item.get_closest_marker("slow")
    return -1 if slow is None else slow.kwargs.get("seconds", 0)
  items.sort(key=cost, reverse=True)


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


@contextlib.contextmanager
def built_once(tmp_path_factory, name):
  """A folder of this test run that one process builds and every process reads.

  Yields ``(path, build)``: ``build`` is True for the first process to get here (it must
  fill ``path``), False once the folder is complete. The xdist workers of one run share
  the folder (in the run's temporary directory) and take turns under a file lock, so an
  expensive input (the embedded dataset, short pretraining runs) is made once per run,
  not once per worker. A build that raises leaves no READY mark: the next process
  builds again."""
  import fcntl
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # .../pytest-N, shared by the workers of this run
  path = base / name
  with open(base / f"{name}.lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      ready = path / "READY"
      if ready.exists():
        yield path, False
      else:
        path.mkdir(exist_ok=True)
        yield path, True
        ready.touch()
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """The embedded dataset (``mssl_shapes/32``, both splits), built once per test run
  (:func:`built_once`; a build costs ~50 s of one core). Tests only read it."""
  with built_once(tmp_path_factory, "tfds_embedded") as (root, build):
    if build:
      from mssl import data
      data.load_split("mssl_shapes/32", "train", data_dir=str(root))
  return str(root)


@pytest.fixture(scope="session")
def tiny_output():
  """One forward pass of a tiny MAE, computed once per worker (tests/losses/test_masked.py,
  tests/models/test_mae.py, tests/steps/test_masked_image.py only read it)."""
  from helpers import jit_apply, jit_init, tiny_mae
  model = tiny_mae()
  images = jax.random.uniform(jax.random.key(0), (6, 16, 16, 3))
  params = jit_init(model, jax.random.key(1), images, jax.random.key(2), train=False)
  return jit_apply(model, params, images, jax.random.key(3), train=False)


@pytest.fixture(scope="session")
def pretrained(tfds_dir, tmp_path_factory):
  """Short M-MAE, U-MAE and MAE runs from the same initialisation and data, made once
  per test run (tests/trainers/test_pretraining.py, tests/trainers/test_finetune.py):
  ``{objective: (workdir, results, metrics records)}``. Tests only read the workdirs."""
  from helpers import MASKED_IMAGE_RUNS, masked_config
  from mssl import loop, run, writers
  runs = {}
  with built_once(tmp_path_factory, "masked_image_runs") as (root, build):
    for objective in MASKED_IMAGE_RUNS:
      workdir = root / objective
      if build:
        config = masked_config(objective, tfds_dir, 40, **{"optimizer.base_lr": 3e-3})
        run.train_and_evaluate(config, str(workdir))
      runs[objective] = (workdir, loop.read_results(str(workdir)),
                         writers.read_jsonl(os.path.join(workdir, "metrics.jsonl")))
  return runs


# ------------------------------------------------------------ tolerance audit ----------
# MSSL_TOLERANCE_AUDIT=FILE records, for every np.testing.assert_allclose of the run, how
# much of its tolerance the comparison used (max |a - b| / (atol + rtol |b|); 1 fails) as
# JSON lines, so that a run under other settings (device counts, `taskset -c 0`,
# XLA_FLAGS=--xla_cpu_max_isa=AVX) shows which comparisons are close to their bound.
if os.environ.get("MSSL_TOLERANCE_AUDIT"):
  import json
  import traceback

  _assert_allclose = np.testing.assert_allclose

  def _audited_allclose(actual, desired, rtol=1e-7, atol=0, *args, **kwargs):
    try:
      a = np.asarray(actual, np.float64)
      d = np.asarray(desired, np.float64)
      bound = atol + rtol * np.abs(d)
      with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(bound > 0, np.abs(a - d) / bound, np.where(a == d, 0.0, np.inf))
      used = float(np.nanmax(used)) if used.size else 0.0
      frame = next(f for f in reversed(traceback.extract_stack()[:-1])
                   if os.path.basename(f.filename).startswith("test_"))
      with open(os.environ["MSSL_TOLERANCE_AUDIT"], "a") as out:
        out.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "?"),
                              "where": f"{os.path.basename(frame.filename)}:{frame.lineno}",
                              "used": used, "rtol": rtol, "atol": atol}) + "\n")
    except Exception:  # the audit never changes what the assertion does
      pass
    return _assert_allclose(actual, desired, rtol, atol, *args, **kwargs)

  np.testing.assert_allclose = _audited_allclose
