"""mssl.data.views: the augmentation presets and their overrides."""

import pytest

from mssl import data


def test_unknown_preset_and_fields():
  with pytest.raises(ValueError, match="preset must be one of .*'simclr2'"):
    data.preset("simclr2")
  with pytest.raises(ValueError, match=r"unknown augmentation field\(s\) \['blurr'\]"):
    data.preset("simclr", blurr=0.5)
  assert data.preset("byol", blur=0.3)[1].blur == 0.3
  byol = data.preset("byol")
  assert (byol[0].blur, byol[1].blur, byol[0].solarize, byol[1].solarize) == (1.0, 0.1,
                                                                              0.0, 0.2)
  assert data.preset("mocov3")[0].crop_scale == (0.2, 1.0)
  assert all(v.blur == 0 for v in data.preset("byol_cifar"))


def test_grey_small_keeps_strokes_whole_and_changes_no_colour():
  (view,) = data.preset("grey_small")
  assert view.flip == 0.0 and view.crop_scale == (0.5, 1.0)
  assert (view.saturation, view.hue, view.grayscale, view.blur, view.solarize) == (0,) * 5
  assert view.jitter > 0 and view.brightness > 0 and view.contrast > 0


def test_colour_operations_name_what_leaves_grey_images_unchanged():
  from mssl.data import views
  assert views.colour_operations(data.preset("simclr_cifar")) == (
      "saturation", "hue", "grayscale")
  assert views.colour_operations(data.preset("grey_small")) == ()
  assert views.colour_operations(data.preset("mae")) == ()
  assert views.colour_operations(data.preset("simclr_cifar", jitter=0.0)) == ("grayscale",)
  assert views.colour_operations(data.preset("grey_small", hue=0.1)) == ("hue",)
