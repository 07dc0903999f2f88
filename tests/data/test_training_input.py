"""mssl.data.training_input: where the crop runs, the step counts, and the step wrapped
with the device half of the augmentation."""

import numpy as np
import PIL.Image
import pytest

from mssl import data


def test_crop_on_device_auto_takes_small_fixed_shape_cached_splits(shapes_dir, tmp_path):
  import ml_collections
  from mssl.data import training_input
  shapes_split = data.load_split("mssl_shapes/32", "train[:64]", data_dir=shapes_dir)
  for i in range(4):
    folder = tmp_path / "train" / f"c{i % 2}"
    folder.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.full((20 + i, 24, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
  folder_split = data.load_split(f"image_folder:{tmp_path}", "train")
  auto = ml_collections.ConfigDict(dict(crop_on_device="auto", cache="auto",
                                        dataset="x"))
  assert training_input.crops_on_device(auto, shapes_split)
  assert not training_input.crops_on_device(auto, folder_split)  # sizes differ
  never = ml_collections.ConfigDict(dict(crop_on_device="auto", cache="never",
                                         dataset="x"))
  assert not training_input.crops_on_device(never, shapes_split)  # not cached
  forced = ml_collections.ConfigDict(dict(crop_on_device=True, cache="auto",
                                          dataset="folder"))
  with pytest.raises(ValueError, match="crop_on_device=True needs a dataset of fixed"):
    training_input.crops_on_device(forced, folder_split)
