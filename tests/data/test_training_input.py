"""mssl.data.training_input: where the crop runs, the step counts, and the step wrapped
with the device half of the augmentation."""

import numpy as np
import PIL.Image
import pytest

from mssl import data
from mssl.steps.state import TrainState


def test_crop_on_device_auto_takes_small_fixed_shape_cached_splits(tfds_dir, tmp_path):
  import ml_collections
  from mssl.data import training_input
  shapes_split = data.load_split("mssl_shapes/32", "train[:64]", data_dir=tfds_dir)
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


@pytest.mark.parametrize("total_steps,num_epochs,examples,batch_size,want", [
    (100, 1.0, 1000, 64, (100, 15)),   # total_steps wins; 1000 // 64 steps an epoch
    (-1, 2.5, 1000, 64, (37, 15)),     # int(2.5 epochs x 15)
    (-1, 3.0, 10, 64, (3, 1)),         # a split smaller than a batch: one step an epoch
])
def test_step_counts_follow_the_split_size(total_steps, num_epochs, examples, batch_size,
                                           want):
  import ml_collections
  from mssl.data import training_input
  config = ml_collections.ConfigDict(dict(total_steps=total_steps, num_epochs=num_epochs,
                                          batch_size=batch_size))
  assert training_input.steps(config, examples) == want


def test_the_device_half_of_the_augmentation_runs_first_inside_the_step():
  from mssl.data import training_input
  seen = []

  def train_step(state, batch):
    seen.append(batch)
    return state, {}
  host_only = training_input.TrainingInput(split=None, num_classes=10, total_steps=5,
                                           steps_per_epoch=5, make_data=None)
  assert host_only.augment_on_device(train_step) is train_step
  on_device = training_input.TrainingInput(
      split=None, num_classes=10, total_steps=5, steps_per_epoch=5, make_data=None,
      device_views=lambda views, step: tuple(v * 0.0 + step for v in views))
  step = on_device.augment_on_device(train_step)
  label = np.arange(2)
  step(TrainState(step=7, params={}), {"views": (np.ones(2, np.uint8), np.ones(2, np.uint8)), "label": label})
  (batch,) = seen
  assert [v.tolist() for v in batch["views"]] == [[7.0, 7.0], [7.0, 7.0]]  # at the step
  assert batch["label"] is label
  assert on_device.run_info(pretrained_step=3) == {
      "num_classes": 10, "total_steps": 5, "steps_per_epoch": 5, "pretrained_step": 3}


def test_a_colour_preset_on_grey_images_is_warned_about(tmp_path):
  """saturation, hue and grayscale leave grey images unchanged: the run says so and names
  the preset for grey, small images; a grey preset, or colour images, say nothing."""
  import warnings
  from helpers import load_config
  from mssl.data import glyphs, training_input
  grey = glyphs.write_folder(tmp_path / "grey", splits={"train": 4}, size=16)
  config = load_config("quickstart")
  config.data.update(dataset=f"image_folder:{grey}", image_size=16, train_split="train")
  with pytest.warns(data.DataWarning, match=r"config.data.preset='mocov3_cifar' applies "
                                            r"saturation, hue, grayscale to grey images.*"
                                            r"preset='grey_small'"):
    training_input.training_input(config)
  config.data.preset, config.data.preset_overrides = "grey_small", {}
  with warnings.catch_warnings():
    warnings.simplefilter("error", data.DataWarning)
    training_input.training_input(config)
    colour = tmp_path / "colour" / "train"
    for i in range(4):
      (colour / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
      PIL.Image.fromarray(np.random.default_rng(i).integers(0, 255, (16, 16, 3), np.uint8)
                          ).save(colour / f"c{i % 2}" / f"{i}.png")
    config.data.dataset, config.data.preset = f"image_folder:{colour.parent}", "simclr_cifar"
    training_input.training_input(config)
