"""mssl.data.tfds_source: a tfds dataset that is not prepared, a name that is not registered,
and which tfds splits stay encoded."""


import numpy as np
import pytest
import tensorflow_datasets as tfds

from mssl import data
from mssl.data import augment

from data.folders import first_batches, train_stream


def test_missing_dataset_error_names_dataset_dir_and_fix(tmp_path):
  with pytest.raises(data.DatasetNotReadyError) as info:
    data.load_split("cifar10", "train", data_dir=str(tmp_path))
  message = str(info.value)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert "tfds build cifar10" in message
  with pytest.raises(data.DatasetNotReadyError, match="downloads/manual"):
    data.load_split("imagenet2012", "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown tfds dataset 'cifar11'"):
    data.load_split("cifar11", "train", data_dir=str(tmp_path))



def test_unknown_tfds_name_is_reported_as_unknown_with_close_matches(tmp_path):
  """Validation used to call an unknown name 'not prepared' (and suggest building it)."""
  for known in ("cifar10", "mssl_shapes/32", "imagenette/320px", "cifar10:3.*.*",
                "image_folder:/anywhere", "huggingface:mnist"):
    assert data.check_dataset_name(known) is None, known
  message = data.check_dataset_name("cifar11")
  assert message.startswith("unknown tfds dataset 'cifar11'. Close matches: cifar10")
  assert "cifar100" in message and "prepared" not in message
  assert "Close matches: mssl_shapes" in data.check_dataset_name("mssl_shape/32")
  message = data.check_dataset_name("imagenette/321px")
  assert "unknown config '321px' of tfds dataset 'imagenette'" in message
  assert "imagenette/320px" in message
  assert "not a tfds dataset name" in data.check_dataset_name("cifar 10")
  with pytest.raises(ValueError, match="unknown tfds dataset 'cifar11'. Close matches: "
                                       "cifar10"):
    data.load_split("cifar11", "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown config '33' of tfds dataset 'mssl_shapes'"):
    data.load_split("mssl_shapes/33", "train", data_dir=str(tmp_path))



def test_encoded_tfds_splits_only_for_jpeg_features():
  """imagenet2012 (JPEG feature) comes encoded with its tfds ids as names; cifar10 (PNG,
  fixed shape, cached decoded) stays decoded. Both train uint8 views and evaluate."""
  with tfds.testing.mock_data(num_examples=12):
    imagenet = data.load_split("imagenet2012", "train", data_dir="/nonexistent",
                               encoded=True)
    cifar = data.load_split("cifar10", "train", data_dir="/nonexistent", encoded=True)
    assert imagenet.encoded and not cifar.encoded
    example = next(iter(tfds.as_numpy(imagenet.dataset)))
    assert example["image"][:3] == augment.JPEG_MAGIC and b"imagenet2012" in example["name"]
    for split, size in ((imagenet, 32), (cifar, 16)):
      (batch,) = first_batches(train_stream(split, "mocov3", batch_size=4, image_size=size,
                               device_augment=True))
      assert [v.shape for v in batch["views"]] == [(4, size, size, 3)] * 2
      assert batch["views"][0].dtype == np.uint8
      evals = list(tfds.as_numpy(data.eval_dataset(split, batch_size=5, image_size=size)))
      assert float(sum(b["mask"].sum() for b in evals)) == 12

