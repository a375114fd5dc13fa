"""Image classification data for the examples and experiments, offline first.

`load_dataset('fashion_mnist')` reads the IDX files of Debian's
`dataset-fashion-mnist` package (installed by `scripts/install.sh`) when they
exist, and otherwise asks tensorflow-datasets, which downloads. Other names
go to tensorflow-datasets directly. This is example code, not part of the
`morph_net` library.
"""

import gzip
import os
from typing import Tuple

import numpy as np

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}

__all__ = ['FASHION_MNIST_DIR', 'load_fashion_mnist_idx', 'load_dataset']

Arrays = Tuple[np.ndarray, np.ndarray]


def _read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) IDX file into a uint8 array."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  return np.frombuffer(data, dtype=np.uint8,
                       offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist_idx(data_dir: str = FASHION_MNIST_DIR
                          ) -> Tuple[Arrays, Arrays]:
  """Loads Fashion-MNIST from IDX files.

  Returns:
    ((train_images, train_labels), (test_images, test_labels)); images are
    float32 in [0, 1] with shape [N, 28, 28, 1], labels int64.

  Raises:
    FileNotFoundError: with the install hint when the files are missing.
  """
  result = []
  for split in ('train', 'test'):
    images_file, labels_file = (os.path.join(data_dir, f)
                                for f in _FILES[split])
    if not os.path.exists(images_file):
      raise FileNotFoundError(
          'Fashion-MNIST not found at %s. Install it with `scripts/install.sh '
          'main` (Debian package dataset-fashion-mnist) or pass --data_dir.'
          % images_file)
    images = _read_idx(images_file).astype(np.float32)[..., None] / 255.0
    labels = _read_idx(labels_file).astype(np.int64)
    result.append((images, labels))
  return result[0], result[1]


def load_dataset(name: str = 'fashion_mnist',
                 data_dir: str = FASHION_MNIST_DIR) -> Tuple[Arrays, Arrays]:
  """Loads (train, test) arrays; offline files first for Fashion-MNIST."""
  if name == 'fashion_mnist' and os.path.exists(data_dir):
    return load_fashion_mnist_idx(data_dir)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  splits = []
  for split in ('train', 'test'):
    # Batches joined here rather than batch_size=-1: one batch of a whole
    # split aborts TensorFlow on a dataset of unknown size (as
    # tfds.testing.mock_data makes).
    batches = list(tfds.as_numpy(
        tfds.load(name, split=split, batch_size=4096, as_supervised=True)))
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    splits.append((images.astype(np.float32) / 255.0, labels.astype(np.int64)))
  return splits[0], splits[1]
