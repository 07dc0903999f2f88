"""A grey image folder of hand-drawn-looking digits, written locally (no download).

``write_folder(root)`` draws the ten digits as pen strokes, each image its own: the
strokes' control points jitter, and a random affine map (scale, shear, rotation, shift),
pen width, ink and paper shade, blur and sensor noise vary per image. The result is an
``image_folder:`` dataset of single-channel PNGs (``root/<split>/<digit>/*.png``) that
looks like what users bring from MNIST-style data: grey, small, classes told apart by
stroke shape, with nothing in colour or flat regions to shortcut on. Tests write small
ones; ``python -m mssl.data.glyphs --out DIR`` writes one to train on
(README, *Your own images*).
"""

from __future__ import annotations

import argparse
import math
import pathlib

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

CLASSES = tuple(str(d) for d in range(10))


def _arc(cx, cy, rx, ry, start, stop, n=9):
  """Points of an elliptic arc; angles in degrees, 0 at the right, counter-clockwise
  with y pointing down (as on paper: 90 is the top)."""
  t = np.radians(np.linspace(start, stop, n))
  return list(zip(cx + rx * np.cos(t), cy - ry * np.sin(t)))


# Each digit: strokes (polylines) in a unit box, x right, y down.
STROKES = {
    "0": [_arc(0.5, 0.5, 0.3, 0.42, 0, 360, 17)],
    "1": [[(0.35, 0.25), (0.55, 0.08), (0.55, 0.92)]],
    "2": [_arc(0.5, 0.3, 0.28, 0.22, 160, -30) + [(0.22, 0.92), (0.8, 0.92)]],
    "3": [_arc(0.48, 0.29, 0.27, 0.21, 150, -90), _arc(0.48, 0.71, 0.3, 0.21, 90, -150)],
    "4": [[(0.62, 0.92), (0.62, 0.08), (0.18, 0.66), (0.85, 0.66)]],
    "5": [[(0.78, 0.08), (0.3, 0.08), (0.26, 0.45)] + _arc(0.5, 0.66, 0.3, 0.26, 130, -150)],
    "6": [_arc(0.62, 0.42, 0.38, 0.34, 80, 190, 6) + _arc(0.5, 0.68, 0.27, 0.24, 180, -180)],
    "7": [[(0.2, 0.08), (0.8, 0.08), (0.4, 0.92)]],
    "8": [_arc(0.5, 0.28, 0.23, 0.2, -90, 270, 15), _arc(0.5, 0.7, 0.28, 0.22, 90, 450, 15)],
    "9": [_arc(0.5, 0.32, 0.26, 0.24, 0, 360, 13) + [(0.76, 0.32), (0.7, 0.92)]],
}


def draw(digit: str, rng: np.random.Generator, size: int = 28) -> np.ndarray:
  """One uint8 ``(size, size)`` grey image of ``digit``."""
  scale = 4  # drawn at 4x, then downsampled: smooth strokes
  big = size * scale
  paper = int(rng.integers(0, 60))
  ink = int(rng.integers(190, 256))
  image = PIL.Image.new("L", (big, big), paper)
  pen = PIL.ImageDraw.Draw(image)
  angle = math.radians(rng.uniform(-15, 15))
  shear = rng.uniform(-0.3, 0.3)
  sx, sy = rng.uniform(0.55, 0.8) * big, rng.uniform(0.6, 0.85) * big
  cx, cy = big / 2 + rng.uniform(-0.08, 0.08) * big, big / 2 + rng.uniform(-0.08, 0.08) * big
  cos, sin = math.cos(angle), math.sin(angle)
  width = max(1, int(rng.uniform(0.07, 0.13) * big))

  def place(x, y):
    x, y = (x - 0.5 + shear * (y - 0.5)) * sx, (y - 0.5) * sy
    return cx + cos * x - sin * y, cy + sin * x + cos * y

  for stroke in STROKES[digit]:
    points = np.asarray(stroke) + rng.normal(0, 0.025, (len(stroke), 2))
    placed = [place(x, y) for x, y in points]
    pen.line(placed, fill=ink, width=width, joint="curve")
    r = width / 2  # round pen ends
    for x, y in (placed[0], placed[-1]):
      pen.ellipse((x - r, y - r, x + r, y + r), fill=ink)
  image = image.filter(PIL.ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0) * scale / 2))
  pixels = np.asarray(image.resize((size, size), PIL.Image.LANCZOS), np.float32)
  pixels += rng.normal(0, rng.uniform(2, 10), pixels.shape)
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def write_folder(root, size: int = 28, seed: int = 0, splits: dict = None) -> pathlib.Path:
  """Write ``root/<split>/<digit>/<i>.png`` and return ``root``. ``splits``: images per
  class of each split (default ``{"train": 600, "test": 100}``: 6,000 and 1,000 images);
  every image is drawn from its own seed ``(seed, split, digit, i)``."""
  root = pathlib.Path(root)
  splits = splits or {"train": 600, "test": 100}
  for s, (split, count) in enumerate(sorted(splits.items())):
    for d, digit in enumerate(CLASSES):
      folder = root / split / digit
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(count):
        rng = np.random.default_rng([seed, s, d, i])
        PIL.Image.fromarray(draw(digit, rng, size), mode="L").save(folder / f"{i:05d}.png")
  return root


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="the folder to write")
  parser.add_argument("--train", type=int, default=600, help="images per class, train")
  parser.add_argument("--test", type=int, default=100, help="images per class, test")
  parser.add_argument("--size", type=int, default=28)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  root = write_folder(args.out, size=args.size, seed=args.seed,
                      splits={"train": args.train, "test": args.test})
  print(f"wrote {root} (--config.data.dataset=image_folder:{root})")


if __name__ == "__main__":
  main()
