"""mssl.data.glyphs: a grey digit folder written locally. Its images are grey one-channel
PNGs in the image-folder layout, the same for a seed, all different, and its classes
differ by stroke shape: raw pixels tell them apart well above chance but far from
perfectly (nothing trivial to shortcut on)."""

import numpy as np
import PIL.Image

from mssl import data
from mssl.data import glyphs


def _draws(per_class, seed=0):
  return np.stack([[glyphs.draw(d, np.random.default_rng([seed, c, i]))
                    for i in range(per_class)] for c, d in enumerate(glyphs.CLASSES)])


def test_the_folder_is_an_image_folder_of_grey_pngs_fixed_by_its_seed(tmp_path):
  root = glyphs.write_folder(tmp_path / "a", splits={"train": 3, "test": 1}, size=20)
  again = glyphs.write_folder(tmp_path / "b", splits={"train": 3, "test": 1}, size=20)
  files = sorted(root.rglob("*.png"))
  assert len(files) == 40 and {f.parent.name for f in files} == set(glyphs.CLASSES)
  assert all((again / f.relative_to(root)).read_bytes() == f.read_bytes() for f in files)
  with PIL.Image.open(files[0]) as image:
    assert image.mode == "L" and image.size == (20, 20)
  split = data.load_split(f"image_folder:{root}", "train")
  assert split.num_examples == 30 and split.class_names == glyphs.CLASSES
  assert data.split.looks_grey(split)
  assert len({f.read_bytes() for f in files}) == 40  # every image its own


def test_raw_pixels_tell_the_digits_apart_but_not_trivially():
  """Nearest class mean on raw pixels, 30 training images a class: measured 60% (chance
  10%). A drawing that ignored its digit would sit at chance; one without variation
  (no jitter, affine, pen or noise) at 100%."""
  images = _draws(40).reshape(10, 40, -1).astype(np.float32)
  means = images[:, :30].mean(1)
  test = images[:, 30:]
  predicted = np.argmin(((test[:, :, None] - means[None, None]) ** 2).sum(-1), -1)
  accuracy = (predicted == np.arange(10)[:, None]).mean()
  assert 0.35 < accuracy < 0.9, accuracy
  assert images.std(1).mean() > 20  # images of a digit differ, pixel for pixel
