"""The final table of a pretraining run: the linear probe and kNN accuracy of the
pretrained encoder beside its baselines (the same encoder at random initialisation, the
raw pixels), and a note for every baseline the encoder does not beat.

``final`` is the run's results dict, ``{"<row>/linear_probe": ..., "<row>/knn": ...}`` for
the rows of :data:`ROWS` it has.
"""

from __future__ import annotations

# Result prefix -> the row's label in the table and in the notes.
ROWS = {"pretrained": "pretrained encoder", "random_init": "random init",
        "pixels": "raw pixels"}
BASELINES = ("random_init", "pixels")
METRICS = {"linear_probe": "linear probe", "knn": "kNN"}


def unbeaten_baselines(final: dict, baselines=BASELINES) -> list[str]:
  """One line for every baseline whose accuracy is at least the pretrained encoder's."""
  lines = []
  for metric, name in METRICS.items():
    mine = final.get(f"pretrained/{metric}")
    for baseline in baselines:
      other = final.get(f"{baseline}/{metric}")
      if mine is not None and other is not None and mine <= other:
        lines.append(f"the pretrained encoder does not beat {ROWS[baseline]} "
                     f"on the {name}: {100 * mine:.2f}% vs {100 * other:.2f}%")
  return lines


def format_results(final: dict) -> str:
  """The table, one line per row present in ``final``, then the notes."""
  rows = ["", "                      linear probe    kNN (k=20)"]
  for prefix, label in ROWS.items():
    if f"{prefix}/linear_probe" in final:
      rows.append(f"{label:>20}    {100 * final[f'{prefix}/linear_probe']:10.2f}%  "
                  f"{100 * final[f'{prefix}/knn']:10.2f}%")
  rows += [f"  note: {line}." for line in unbeaten_baselines(final)]
  return "\n".join(rows)
