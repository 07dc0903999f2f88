"""PNG plots of a run, written to its workdir at the end of training.

* ``loss.png``: the objective and each of its components over training;
* ``effective_rank.png``: effective rank of the eval features and projections;
* ``knn_accuracy.png``: kNN and online-probe accuracy on the eval split;
* ``spectrum.png``: the eigenvalues of the final embedding covariance (log scale), the
  picture of dimensional collapse;
* ``embedding.png``: a 2-D map of the final eval-split features coloured by label
  (:func:`write_embedding`: UMAP where ``umap-learn`` is installed, else scikit-learn's
  t-SNE, or PCA; the title names the method).
"""

from __future__ import annotations

import os

import numpy as np

from mssl import writers

EMBEDDING_METHODS = ("auto", "umap", "tsne", "pca", "none")


def _subplots(*args, **kwargs):
  # Figures are drawn on their own Agg canvas (matplotlib's object API, no pyplot):
  # nothing here changes the process's backend, so a notebook that imports mssl keeps its
  # own. matplotlib is imported here, when a plot is drawn.
  from matplotlib.figure import Figure
  fig = Figure(figsize=kwargs.pop("figsize"))
  return fig, fig.subplots(*args, **kwargs)


def _series(records, key):
  points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
  return ([p[0] for p in points], [p[1] for p in points]) if points else None


def _plot(path, records, keys, title, ylabel):
  fig, ax = _subplots(figsize=(6, 3.6))
  drawn = 0
  for key in keys:
    series = _series(records, key)
    if series:
      ax.plot(*series, label=key, marker="." if len(series[0]) < 30 else None)
      drawn += 1
  if not drawn:
    return False
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return True


def write_training_plots(workdir: str, spectrum=None) -> list[str]:
  """Writes the plots above from ``workdir/metrics.jsonl``; returns the files written."""
  records = writers.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  keys = sorted({k for r in records for k in r})
  written = []
  for name, chosen, title, ylabel in (
      ("loss.png", [k for k in keys if k == "loss" or k.startswith("loss/")],
       "objective", "value"),
      ("effective_rank.png", [k for k in keys if "effective_rank" in k],
       "effective rank (eval split)", "effective rank"),
      ("knn_accuracy.png", [k for k in keys if k in ("eval/knn_accuracy",
                                                     "eval/online_probe_accuracy")],
       "accuracy (eval split)", "accuracy")):
    path = os.path.join(workdir, name)
    if _plot(path, records, chosen, title, ylabel):
      written.append(path)
  if spectrum is not None:
    path = os.path.join(workdir, "spectrum.png")
    fig, ax = _subplots(figsize=(6, 3.6))
    ax.semilogy(np.maximum(np.asarray(spectrum), 1e-12))
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue")
    ax.set_title("spectrum of the final embedding covariance C(z, z)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    written.append(path)
  return written


def write_reconstructions(path: str, original, masked, reconstruction) -> str:
  """A grid with one row per image: original | masked input | reconstruction."""
  columns = (("original", original), ("masked", masked), ("reconstruction", reconstruction))
  rows = len(original)
  fig, axes = _subplots(rows, 3, figsize=(4.5, 1.5 * rows), squeeze=False)
  for r in range(rows):
    for c, (title, images) in enumerate(columns):
      ax = axes[r, c]
      ax.imshow(np.clip(np.asarray(images[r], np.float32), 0, 1), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _importable(name: str) -> bool:
  import importlib.util
  return importlib.util.find_spec(name) is not None


def embedding_2d(features, method: str = "auto", seed: int = 0):
  """``(coordinates (N, 2), the method's name)`` of ``features`` (N, D). ``"auto"``: UMAP
  (``umap-learn``) where installed, else t-SNE (scikit-learn), else PCA."""
  if method not in EMBEDDING_METHODS[:-1]:
    raise ValueError(f"method must be one of {EMBEDDING_METHODS[:-1]}; got {method!r}.")
  x = np.asarray(features, np.float64)
  if method == "auto":
    method = ("umap" if _importable("umap") else "tsne" if _importable("sklearn")
              else "pca")
  if method == "umap":
    import umap
    return (umap.UMAP(n_components=2, random_state=seed).fit_transform(x),
            "UMAP (umap-learn)")
  if method == "tsne":
    from sklearn.manifold import TSNE
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    return (TSNE(n_components=2, init="pca", perplexity=perplexity,
                 random_state=seed).fit_transform(x), "t-SNE (scikit-learn)")
  centred = x - x.mean(0, keepdims=True)
  if _importable("sklearn"):
    from sklearn.decomposition import PCA
    return PCA(n_components=2, random_state=seed).fit_transform(centred), \
        "PCA (scikit-learn)"
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:2].T, "PCA (numpy)"


def write_embedding(path: str, features, labels, method: str = "auto",
                    seed: int = 0) -> str:
  """``embedding.png``: the 2-D map of ``features`` coloured by ``labels``; returns the
  name of the method that drew it."""
  coords, name = embedding_2d(features, method, seed)
  labels = np.asarray(labels)
  fig, ax = _subplots(figsize=(5, 5))
  classes = np.unique(labels)
  cmap = "tab10" if len(classes) <= 10 else "tab20"
  points = ax.scatter(coords[:, 0], coords[:, 1], c=labels, cmap=cmap, s=6,
                      vmin=classes.min(), vmax=classes.max() if len(classes) > 1 else None)
  if len(classes) <= 20:
    ax.legend(*points.legend_elements(), fontsize=6, markerscale=0.8, loc="best",
              title="label", title_fontsize=7)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(f"eval-split features, {len(labels)} points: {name}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return name
