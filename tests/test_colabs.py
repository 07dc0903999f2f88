"""The demos in colabs/ run top to bottom and print what the README shows."""

import pathlib
import runpy
import sys


COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"


def test_matrix_toolkit_tour(tmp_path, capsys, monkeypatch):
  plot = tmp_path / "spectrum.png"
  monkeypatch.setattr(sys, "argv", ["matrix_toolkit.py", "--plot", str(plot)])
  runpy.run_path(str(COLABS / "matrix_toolkit.py"), run_name="__main__")
  out = capsys.readouterr().out
  assert plot.stat().st_size > 1000
  rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("64", "1 ")]
  # Collapse lowers the effective rank: 64 directions versus 1.
  table = {int(r[0]): float(r[1]) for r in rows if len(r) == 5}
  assert table[64] > 50 and table[1] < 2, table
  assert "Taylor logarithm" in out
