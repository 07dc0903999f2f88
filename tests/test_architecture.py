"""The import graph of ``mssl/`` follows the layers of ``docs/architecture.md``.

Every import of an ``mssl`` module is read from the source (``ast``), at module level and
inside functions alike (a deferred import is still a dependency), and checked against the
layer table below: a module may import its own layer or lower ones, never a higher one, and
no set of modules imports itself in a circle. Trainers are siblings: none imports another.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGE = pathlib.Path(ROOT) / "mssl"

# docs/architecture.md, lowest first. A name stands for itself and, when it ends in ".",
# for every module under it.
LAYERS = (
    ("core", ("mssl.matrix", "mssl.losses", "mssl.losses.", "mssl.models", "mssl.models.",
              "mssl.optim", "mssl.sharding")),
    ("steps", ("mssl.steps", "mssl.steps.", "mssl.data.views", "mssl.data.device_augment")),
    ("services", ("mssl.data", "mssl.data.", "mssl.eval", "mssl.eval.",
                  "mssl.checkpoint", "mssl.workdir", "mssl.writers", "mssl.plots",
                  "mssl.loop", "mssl.export", "mssl.validation")),
    ("trainers", ("mssl.trainers", "mssl.trainers.")),
    ("entry", ("mssl", "mssl.run", "mssl.main")),
)


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def modules(root: pathlib.Path = PACKAGE) -> dict:
  return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def import_graph(root: pathlib.Path = PACKAGE) -> dict:
  """``{module: {imported mssl module, ...}}`` for every module under ``root``."""
  known = modules(root)

  def resolve(name: str, attribute: str | None = None) -> str | None:
    if attribute and f"{name}.{attribute}" in known:  # from mssl import losses
      return f"{name}.{attribute}"
    while name and name not in known:  # from mssl.models.vit import X -> mssl.models.vit
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for name, path in known.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        found = [resolve(a.name) for a in node.names if a.name.split(".")[0] == "mssl"]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
          node.module.split(".")[0] == "mssl":
        found = [resolve(node.module, a.name) for a in node.names]
      elif isinstance(node, ast.Constant) and node.value in known and node.value != "mssl":
        found = [node.value]  # a module named by a string (importlib.import_module)
      else:
        continue
      targets.update(t for t in found if t and t != name)
    graph[name] = targets
  return graph


def layer_of(module: str) -> int:
  best = None
  for index, (_, names) in enumerate(LAYERS):
    for pattern in names:
      exact = pattern == module
      under = pattern.endswith(".") and module.startswith(pattern)
      if exact or under:
        length = len(pattern) + (1 if exact else 0)  # the most specific pattern wins
        if best is None or length > best[0]:
          best = (length, index)
  if best is None:
    raise KeyError(f"{module} is in no layer of LAYERS (docs/architecture.md)")
  return best[1]


def cycles(graph: dict) -> list:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def upward_imports(graph: dict) -> list:
  """``(module, imported)`` pairs where a lower layer imports a higher one, or a trainer
  imports another trainer."""
  bad = []
  for module, targets in graph.items():
    for target in sorted(targets):
      if layer_of(target) > layer_of(module):
        bad.append((module, target))
      elif module.startswith("mssl.trainers.") and target.startswith("mssl.trainers."):
        bad.append((module, target))
  return bad


def test_every_module_has_a_layer():
  for module in modules():
    layer_of(module)


def test_no_circle_in_the_import_graph():
  assert cycles(import_graph()) == []


def test_imports_go_down_the_layers():
  assert upward_imports(import_graph()) == []


def test_the_checks_catch_what_they_are_for():
  """The graph reader sees deferred imports and modules named for ``import_module``, and the checks flag a
  circle and an upward import (so a passing run above means something)."""
  graph = import_graph()
  assert {"mssl.trainers.pretraining", "mssl.trainers.finetune", "mssl.trainers.linear_eval",
          "mssl.trainers.language_model"} <= graph["mssl.run"]  # named for import_module
  assert {"mssl.steps.two_view", "mssl.steps.masked_image"} <= graph["mssl.steps.family"]
  assert "mssl.steps.family" in graph["mssl.trainers.pretraining"]
  assert "mssl.steps.two_view" in graph["mssl.export"]  # a deferred import, in a function
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert upward_imports({"mssl.matrix": {"mssl.loop"}}) == [("mssl.matrix", "mssl.loop")]
  assert upward_imports({"mssl.trainers.finetune": {"mssl.trainers.pretraining"}}) == [
      ("mssl.trainers.finetune", "mssl.trainers.pretraining")]
  assert layer_of("mssl.data.views") < layer_of("mssl.data.pipeline")
  assert "mssl.data.failures" in graph["mssl.data.image_folder"]


# ------------------------------------------------------------ private names ------------
def private_uses(root: pathlib.Path = PACKAGE) -> list[str]:
  """``file:line name`` of every use of another mssl module's private name (``_x``): from
  ``from mssl.m import _x``, or an attribute ``_x`` read off a name bound to an mssl module
  (``pipeline._options``, ``data.pipeline._options``). What a module offers others is
  public; what it keeps private is free to change."""
  found = []
  for path in sorted(root.rglob("*.py")):
    tree = ast.parse(path.read_text(), str(path))
    aliases = set()  # local names bound to mssl modules (or packages)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        aliases.update((a.asname or a.name).split(".")[0] for a in node.names
                       if a.name.split(".")[0] == "mssl")
      elif isinstance(node, ast.ImportFrom) and node.module and \
          node.module.split(".")[0] == "mssl":
        for a in node.names:
          if a.name.startswith("_") and not a.name.startswith("__"):
            found.append(f"{path.relative_to(root)}:{node.lineno} {a.name}")
          aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
          not node.attr.startswith("__"):
        base = node.value
        while isinstance(base, ast.Attribute):
          base = base.value
        if isinstance(base, ast.Name) and base.id in aliases:
          found.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
  return found


def test_no_module_uses_another_modules_private_names():
  assert private_uses() == []


def test_the_private_name_check_catches_both_forms(tmp_path):
  (tmp_path / "a.py").write_text(
      "from mssl import data\n"
      "from mssl.data.pipeline import _options, train_dataset\n"
      "x = data.pipeline._prepare(1) + data.pipeline.options() + self._own\n")
  assert private_uses(tmp_path) == ["a.py:2 _options", "a.py:3 data.pipeline._prepare"]


# ------------------------------------------------------------ timings ------------------
TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|us|µs)\b|\bper core\b")


def timings_in(root: pathlib.Path) -> list[str]:
  """``file:line`` of each timing figure in the modules under ``root``: one machine's
  numbers age in prose; benchmarks/results keeps them with the machine that measured."""
  return [f"{path.relative_to(root)}:{number}"
          for path in sorted(root.rglob("*.py"))
          for number, line in enumerate(path.read_text().splitlines(), 1)
          if TIMING.search(line)]


def test_the_data_modules_carry_no_timings(tmp_path):
  assert timings_in(PACKAGE / "data") == []
  (tmp_path / "m.py").write_text('"""Decoding takes ~0.8 ms; 64 views/s per core."""\nx = 1\n')
  assert timings_in(tmp_path) == ["m.py:1"]


# ------------------------------------------------------------ families -----------------
def objective_tests(root: pathlib.Path = PACKAGE) -> list[str]:
  """``file:line`` of every comparison outside ``mssl/steps/`` and ``mssl/losses/`` that
  tests an objective or a family against a name (a string literal, or a literal
  collection of them; an augmentation preset called "mae" is no objective), or that reads
  a list of objective names kept beside the registry: what the objective does is its
  registry entry's and its family's to say."""
  from mssl import losses
  from mssl.steps import family
  names = set(losses.names()) | set(family.FAMILIES)

  def named(node) -> bool:
    if isinstance(node, ast.Constant):
      return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
      return any(named(e) for e in node.elts)
    return False

  found = []
  for path in sorted(root.rglob("*.py")):
    relative = path.relative_to(root)
    if relative.parts[0] in ("steps", "losses"):
      continue
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Compare) and any(named(o) for o in
                                               (node.left, *node.comparators)) and \
          any(w in ast.unparse(node) for w in ("objective", "family")):  # not a preset's
        found.append(f"{relative}:{node.lineno}")
      elif isinstance(node, (ast.Name, ast.Attribute)) and \
          getattr(node, "id", getattr(node, "attr", "")) in ("MASKED_IMAGE", "REGULARIZERS"):
        found.append(f"{relative}:{node.lineno}")
  return found


def test_no_module_outside_the_steps_and_the_registry_tests_an_objective_or_family():
  assert objective_tests() == []


def test_the_objective_check_catches_a_name_test(tmp_path):
  (tmp_path / "trainers").mkdir()
  (tmp_path / "steps").mkdir()
  (tmp_path / "trainers" / "bad.py").write_text(
      "def f(config):\n"
      "  if config.objective in ('mmae', 'umae'):\n"
      "    return 1\n"
      "  return config.objective == 'byol' or losses.MASKED_IMAGE\n")
  (tmp_path / "steps" / "fine.py").write_text("x = objective == 'mmae'\n")  # allowed there
  assert objective_tests(tmp_path) == ["trainers/bad.py:2", "trainers/bad.py:4",
                                       "trainers/bad.py:4"]


STEP_MODULES = ("mssl.steps.two_view", "mssl.steps.masked_image", "mssl.steps.finetune",
                "mssl.steps.language_model")


@pytest.mark.parametrize("module", STEP_MODULES)
def test_step_modules_define_make_train_step(module):
  """The modules the TensorFlow-free import test (below) covers are the ones that define
  a step."""
  source = (PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text()
  assert "def make_train_step(" in source
  defining = {m for m, p in modules().items() if "def make_train_step(" in p.read_text()}
  assert defining == set(STEP_MODULES)


def test_step_modules_import_without_tensorflow_clu_or_matplotlib():
  code = ("import sys\n"
          "for name in ('tensorflow', 'tensorflow_datasets', 'clu', 'matplotlib'):\n"
          "  sys.modules[name] = None  # importing it raises ImportError\n"
          f"import {', '.join(STEP_MODULES)}, mssl.sharding\n"
          "assert 'mssl.data' not in sys.modules and 'mssl.loop' not in sys.modules\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True, env={"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
                                        "PATH": "/usr/bin:/bin"})
  assert proc.returncode == 0, proc.stderr[-3000:]


# ------------------------------------------------------------ docs ---------------------
def files_named(section: str, text: str) -> list[str]:
  """The files a bullet of docs/architecture.md names in backticks (``a/b.py``,
  ``a/b.py::NAME``; placeholders such as ``<family>`` left out)."""
  start = text.index(f"* **{section}**")
  end = text.find("\n* **", start + 1)
  bullet = text[start:end if end > 0 else None]
  return sorted({m.split("::")[0] for m in re.findall(r"`([\w./<>:-]+\.py(?:::\w+)?)`",
                                                      bullet) if "<" not in m})


@pytest.mark.parametrize("section,must_name", [
    ("Add an objective", {"tests/losses/reference.py", "tests/trainers/test_pretraining.py",
                          "tests/test_completeness.py"}),
    ("Add a family", {"mssl/steps/family.py", "tests/steps/test_family.py"}),
])
def test_the_add_an_objective_and_add_a_family_lists_name_files_that_exist(section,
                                                                           must_name):
  text = (ROOT / "docs" / "architecture.md").read_text()
  named = files_named(section, text)
  assert must_name <= set(named), named
  missing = [f for f in named if not (ROOT / f).is_file()]
  assert missing == [], missing
  assert files_named("Add a family", "* **Add a family**: `x/gone.py`, `a/<b>.py`\n") == \
      ["x/gone.py"]
