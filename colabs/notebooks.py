"""Builds the Colab notebooks (``colabs/*.ipynb``) from their percent-format sources.

    python colabs/notebooks.py            # rewrite every notebook from its .py source
    python colabs/notebooks.py --check    # exit 1 if a notebook is out of date

Each demo is written once, as a plain Python file with ``# %%`` code cells and
``# %% [markdown]`` text cells (readable in review, runnable as a script); the notebook is
generated from it, so the two never disagree. ``tests/test_colabs.py`` checks that they are
in sync and executes every notebook's code cells top to bottom.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = ("quickstart.py", "matrix_toolkit.py", "embed_images.py")


def cells(source: str) -> list[dict]:
  """Splits a percent-format script into notebook cells."""
  out, kind, lines = [], None, []

  def flush():
    text = "\n".join(lines).strip("\n")
    if kind is not None and text:
      if kind == "markdown":
        text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                         for line in text.splitlines())
      out.append({"cell_type": kind, "metadata": {},
                  "source": [line + "\n" for line in text.splitlines()][:-1]
                  + [text.splitlines()[-1]],
                  **({"outputs": [], "execution_count": None} if kind == "code" else {})})

  for line in source.splitlines():
    if line.startswith("# %%"):
      flush()
      kind, lines = ("markdown" if "[markdown]" in line else "code"), []
    else:
      lines.append(line)
  flush()
  return out


def notebook(source: str) -> dict:
  return {"cells": cells(source), "metadata": {
      "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"name": "python"}, "accelerator": "GPU"},
      "nbformat": 4, "nbformat_minor": 5}


def render(name: str) -> str:
  source = (HERE / name).read_text(encoding="utf-8")
  return json.dumps(notebook(source), indent=1, sort_keys=True) + "\n"


def code_of(ipynb_path) -> str:
  """The code cells of a notebook, joined in order (what running it top to bottom runs)."""
  nb = json.loads(pathlib.Path(ipynb_path).read_text(encoding="utf-8"))
  return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args(argv)
  stale = []
  for name in SOURCES:
    target = HERE / name.replace(".py", ".ipynb")
    text = render(name)
    if args.check:
      if not target.exists() or target.read_text(encoding="utf-8") != text:
        stale.append(target.name)
    else:
      target.write_text(text, encoding="utf-8")
      print(f"wrote {target}")
  if stale:
    print(f"out of date: {', '.join(stale)}; run python colabs/notebooks.py")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
