"""mssl.plots: which PNGs a run's metrics give, at the size they are drawn."""

import json

import numpy as np
import PIL.Image

from mssl import plots


def _write_metrics(workdir, records):
  with open(workdir / "metrics.jsonl", "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")


def test_training_plots_are_drawn_for_the_series_that_hold_numbers(tmp_path):
  records = [{"step": s, "loss": 1.0 / s, "loss/uniformity": -float(s),
              "effective_rank_cls": 2.0 + s, "eval/knn_accuracy": "nan"}
             for s in range(1, 6)]
  records[2]["loss"] = "nan"  # a non-finite value (text in metrics.jsonl) is skipped
  _write_metrics(tmp_path, records)
  written = plots.write_training_plots(str(tmp_path))
  # knn_accuracy.png: its only series holds no number, so it is not drawn.
  assert written == [str(tmp_path / "loss.png"), str(tmp_path / "effective_rank.png")]
  for path in written:
    assert PIL.Image.open(path).size == (660, 396)  # 6 x 3.6 in at 110 dpi
  with_spectrum = plots.write_training_plots(str(tmp_path),
                                             spectrum=np.geomspace(1, 1e-6, 8))
  assert with_spectrum == written + [str(tmp_path / "spectrum.png")]
  assert PIL.Image.open(tmp_path / "spectrum.png").size == (660, 396)
  empty = tmp_path / "empty"
  empty.mkdir()
  assert plots.write_training_plots(str(empty)) == []


def test_reconstructions_are_one_row_per_image_of_three_panels(tmp_path):
  original = np.zeros((2, 4, 4, 3), np.float32)
  original[..., 0] = 1.0                          # red
  reconstruction = np.zeros((2, 4, 4, 3), np.float32)
  reconstruction[..., 2] = 1.0                    # blue
  masked = np.full((2, 4, 4, 3), 0.5, np.float32)
  path = plots.write_reconstructions(str(tmp_path / "r.png"), original, masked,
                                     reconstruction)
  assert path == str(tmp_path / "r.png")
  image = np.asarray(PIL.Image.open(path).convert("RGB")).astype(int)
  assert image.shape == (330, 495, 3)             # 4.5 x (1.5 x 2 rows) in at 110 dpi
  red = np.all(image == (255, 0, 0), -1).sum()
  blue = np.all(image == (0, 0, 255), -1).sum()
  grey = np.all(np.abs(image - 127.5) <= 1, -1).sum()
  assert red > 1000 and abs(red - blue) <= 0.05 * red and abs(red - grey) <= 0.05 * red


def _two_clusters(n=60, d=16, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat([0, 1], n // 2)
  centres = np.zeros((2, d))
  centres[1, :] = 6.0
  return centres[labels] + rng.standard_normal((n, d)), labels


def _separated(coords, labels) -> bool:
  """The two classes' centroids lie further apart than either class's spread."""
  a, b = coords[labels == 0], coords[labels == 1]
  gap = np.linalg.norm(a.mean(0) - b.mean(0))
  spread = max(np.linalg.norm(a - a.mean(0), axis=1).mean(),
               np.linalg.norm(b - b.mean(0), axis=1).mean())
  return gap > 2 * spread


def test_each_embedding_method_keeps_two_clusters_apart(monkeypatch):
  features, labels = _two_clusters()
  for method, name in (("tsne", "t-SNE (scikit-learn)"), ("pca", "PCA (scikit-learn)")):
    coords, drawn = plots.embedding_2d(features, method)
    assert coords.shape == (60, 2) and drawn == name and _separated(coords, labels)
  # Without umap-learn, "auto" is t-SNE; without scikit-learn either, numpy's PCA.
  monkeypatch.setattr(plots, "_importable", lambda name: False)
  coords, drawn = plots.embedding_2d(features, "auto")
  assert drawn == "PCA (numpy)" and _separated(coords, labels)
  monkeypatch.setattr(plots, "_importable", lambda name: name == "sklearn")
  assert plots.embedding_2d(features, "auto")[1] == "t-SNE (scikit-learn)"


def test_embedding_png_names_its_method(tmp_path):
  features, labels = _two_clusters(n=40)
  name = plots.write_embedding(str(tmp_path / "embedding.png"), features, labels, "pca")
  assert name == "PCA (scikit-learn)"
  assert PIL.Image.open(tmp_path / "embedding.png").size == (550, 550)  # 5 x 5 in
  import pytest
  with pytest.raises(ValueError, match="method must be one of"):
    plots.embedding_2d(features, "mds")
