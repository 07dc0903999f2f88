"""tests/ mirrors mssl/, and what the package registers is tested.

* every module of ``mssl/`` (``__init__.py`` aside) has a test module at its mirror path:
  ``mssl/X.py`` -> ``tests/test_X.py``, ``mssl/PKG/X.py`` -> ``tests/PKG/test_X.py``; and
  every test module is such a mirror or one of the tests of what lies outside ``mssl/``;
* every objective of ``mssl.losses.names()`` has a row in the numpy reference table
  (``CASES``, tests/losses/reference.py), a config file that trains it (its ``get_config()``
  with the default argument sets ``config.objective`` to it) and an end-to-end run: the
  parametrisation of tests/trainers/test_pretraining.py::test_every_objective_runlocal or
  the masked-image runs of conftest.pretrained (helpers.MASKED_IMAGE_RUNS);
* every config file is loaded by a test: the parametrisation of
  tests/test_configs.py::test_config_loads_with_its_documented_command;
* every ``slow`` mark states its measured seconds: tests/conftest.py starts the longest
  first, and xdist hands out one test at a time, so a slow test without them starts last
  and can leave one worker running alone at the end.

The lists are read from those tests themselves (their parametrize marks), not copied here;
test_the_checks_catch_what_they_are_for shows that each check can fail.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re

import pytest

from mssl import losses

from helpers import CONFIGS, MASKED_IMAGE_RUNS, ROOT, load_config

PACKAGE = ROOT / "mssl"
TESTS = ROOT / "tests"
# Test modules about what lies outside mssl/ (and this one).
OUTSIDE = {"test_architecture.py", "test_benchmarks.py", "test_colabs.py",
           "test_completeness.py", "test_configs.py", "test_launch.py", "test_readme.py"}


# ------------------------------------------------------------ the checks ---------------
def mirror(module: pathlib.Path, package: pathlib.Path = PACKAGE,
           tests: pathlib.Path = TESTS) -> pathlib.Path:
  """``mssl/data/pipeline.py`` -> ``tests/data/test_pipeline.py``."""
  relative = module.relative_to(package)
  return tests / relative.parent / f"test_{relative.name}"


def package_modules(package: pathlib.Path = PACKAGE) -> list[pathlib.Path]:
  return sorted(p for p in package.rglob("*.py") if p.name != "__init__.py")


def missing_mirrors(modules, package: pathlib.Path = PACKAGE,
                    tests: pathlib.Path = TESTS) -> list[str]:
  """The modules whose mirror test module does not exist, as ``module -> mirror``."""
  return [f"{m.relative_to(package.parent)} -> "
          f"{mirror(m, package, tests).relative_to(tests.parent)}"
          for m in modules if not mirror(m, package, tests).is_file()]


def strays(test_modules, modules, package: pathlib.Path = PACKAGE,
           tests: pathlib.Path = TESTS) -> list[str]:
  """The test modules that mirror no module and are not about what lies outside mssl/."""
  mirrors = {mirror(m, package, tests) for m in modules}
  return [str(t.relative_to(tests.parent)) for t in test_modules
          if t not in mirrors and not (t.parent == tests and t.name in OUTSIDE)]


def objective_of(row: str, names) -> str | None:
  """The objective a reference row checks: its name, or the longest objective name it
  starts with followed by ``_`` (``kernel_ssl_poly_exact`` -> ``kernel_ssl``)."""
  found = [n for n in names if row == n or row.startswith(n + "_")]
  return max(found, key=len) if found else None


def objective_gaps(objective: str, *, rows, configured, end_to_end, names) -> list[str]:
  """What ``objective`` lacks: a reference row, a config file, an end-to-end run."""
  gaps = []
  if not any(objective_of(row, names) == objective for row in rows):
    gaps.append("no numpy reference row in CASES (tests/losses/reference.py) for "
                f"{objective!r}")
  if objective not in configured.values():
    gaps.append(f"no config file in configs/ whose get_config() trains {objective!r}")
  if objective not in end_to_end:
    gaps.append(f"no end-to-end run of {objective!r} (METHODS of "
                "tests/trainers/test_pretraining.py or helpers.MASKED_IMAGE_RUNS)")
  return gaps


def unloaded_configs(files, loaded) -> list[str]:
  return sorted(set(files) - set(loaded))


SLOW_WITHOUT_SECONDS = re.compile(r"mark\.slow\b(?!\(seconds=)")


def slow_marks_without_seconds(files) -> list[str]:
  """``path:line`` of each slow mark that does not state ``seconds=``."""
  found = []
  for path in files:
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
      if SLOW_WITHOUT_SECONDS.search(line.split("#")[0]):
        found.append(f"{pathlib.Path(path).name}:{number}")
  return found


# ------------------------------------------------------------ what the tests hold ------
def _test_module(relative: str):
  """A test module, imported from its file under a name of its own (not collected)."""
  path = TESTS / relative
  name = "completeness_" + relative.replace("/", "_").removesuffix(".py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parametrized(function, argname: str) -> list:
  """The values ``function`` is parametrised with for ``argname``."""
  for mark in getattr(function, "pytestmark", []):
    if mark.name == "parametrize" and mark.args[0] == argname:
      return list(mark.args[1])
  raise LookupError(f"{function.__name__} is not parametrised over {argname!r}")


@functools.lru_cache(maxsize=None)
def reference_rows() -> tuple:
  return tuple(_test_module("losses/reference.py").CASES)


@functools.lru_cache(maxsize=None)
def end_to_end_objectives() -> frozenset:
  two_view = _test_module("trainers/test_pretraining.py")
  return frozenset(parametrized(two_view.test_every_objective_runlocal, "method")) | \
      frozenset(MASKED_IMAGE_RUNS)


def config_files() -> list[str]:
  return sorted(p.stem for p in CONFIGS.glob("*.py")
                if p.stem not in ("__init__", "common"))


@functools.lru_cache(maxsize=None)
def configured_objectives() -> dict:
  """``{config file: objective}`` of every pretraining config, with its default argument."""
  out = {}
  for name in config_files():
    config = load_config(name)
    if config.mode == "pretrain":
      out[name] = config.objective
  return out


# ------------------------------------------------------------ the tests ----------------
def test_every_package_module_has_a_test_module_at_its_mirror_path():
  assert missing_mirrors(package_modules()) == []


def test_every_test_module_mirrors_a_package_module_or_tests_what_lies_outside():
  assert strays(sorted(TESTS.rglob("test_*.py")), package_modules()) == []


@pytest.mark.parametrize("objective", losses.names())
def test_every_objective_has_a_reference_a_config_and_an_end_to_end_run(objective):
  assert objective_gaps(objective, rows=reference_rows(),
                        configured=configured_objectives(),
                        end_to_end=end_to_end_objectives(), names=losses.names()) == []


def test_every_config_file_is_loaded_by_a_test():
  configs_test = _test_module("test_configs.py")
  loaded = parametrized(configs_test.test_config_loads_with_its_documented_command, "name")
  assert unloaded_configs(config_files(), loaded) == []


def test_every_slow_mark_states_its_seconds():
  assert slow_marks_without_seconds(sorted(TESTS.rglob("test_*.py"))) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
  """Each check flags what it is for (so a passing run above means something), and reads
  the lists it checks from the tests themselves."""
  # (a) A module without a mirror, in a package of its own, and a stray test module.
  package, tests = tmp_path / "mssl", tmp_path / "tests"
  for path in ("mssl/loop.py", "mssl/data/pipeline.py", "mssl/data/__init__.py",
               "tests/test_loop.py", "tests/data/test_pipelines.py",
               "tests/test_readme.py"):
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text("")
  modules = package_modules(package)
  assert sorted(m.name for m in modules) == ["loop.py", "pipeline.py"]  # no __init__.py
  assert missing_mirrors(modules, package, tests) == [
      "mssl/data/pipeline.py -> tests/data/test_pipeline.py"]
  assert strays(sorted(tests.rglob("test_*.py")), modules, package, tests) == [
      "tests/data/test_pipelines.py"]
  assert mirror(PACKAGE / "steps" / "finetune.py") == TESTS / "steps" / "test_finetune.py"
  # (b) An objective without a row, a config or a run; rows name their objective.
  names = losses.names() + ["nope"]
  gaps = objective_gaps("nope", rows=reference_rows(), configured=configured_objectives(),
                        end_to_end=end_to_end_objectives(), names=names)
  assert len(gaps) == 3 and "reference row" in gaps[0] and "config file" in gaps[1]
  assert objective_of("kernel_ssl_poly_exact", names) == "kernel_ssl"
  assert objective_of("mmae_centered", names) == "mmae"   # not "mae"
  assert objective_of("umae", names) == "umae" and objective_of("nope_x", names) == "nope"
  assert objective_of("other", names) is None
  assert objective_gaps("mae", rows=("umae", "mmae_centered"), configured={"x": "mae"},
                        end_to_end={"mae"}, names=names) == [
      "no numpy reference row in CASES (tests/losses/reference.py) for 'mae'"]
  # The lists are the tests' own: the every-objective run's parametrisation and the
  # masked-image runs, the configs the config test loads (mode pretrain only counts).
  assert {"matrix_ssl", "frossl", "mmae", "mae"} <= end_to_end_objectives()
  assert configured_objectives()["quickstart"] == "matrix_ssl"
  assert "linear_eval" not in configured_objectives()
  assert "mmae_shapes" in config_files() and "common" not in config_files()
  # (c) A config file no test loads.
  assert unloaded_configs(config_files() + ["new_recipe"], config_files()) == ["new_recipe"]
  with pytest.raises(LookupError):
    parametrized(test_the_checks_catch_what_they_are_for, "name")
  # (d) A slow mark without its seconds, bare or with other arguments.
  marked = tmp_path / "test_marked.py"
  slow = "@pytest.mark." + "slow"  # split, so that this file itself passes the check
  marked.write_text(f"{slow}\ndef a(): pass\n{slow}(seconds=3)\ndef b(): pass\n"
                    f"{slow}()\ndef c(): pass\n")
  assert slow_marks_without_seconds([marked]) == ["test_marked.py:1", "test_marked.py:5"]
