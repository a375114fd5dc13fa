"""Datasets of the experiments: arrays in memory, configurable with gin."""

import collections
from typing import Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from examples import datasets

__all__ = ['Data', 'load_data']

Data = collections.namedtuple('Data', 'x_train y_train x_test y_test')


def _reshape_images(images: np.ndarray, image_size: Optional[int],
                    channels: Optional[int]) -> np.ndarray:
  if images.ndim == 3:
    images = images[..., None]
  if image_size and images.shape[1:3] != (image_size, image_size):
    out = []
    for start in range(0, len(images), 4096):  # Bounded memory.
      out.append(tf.image.resize(images[start:start + 4096],
                                 (image_size, image_size)).numpy())
    images = np.concatenate(out).astype(np.float32)
  if channels and images.shape[-1] != channels:
    if images.shape[-1] != 1:
      raise ValueError('Invalid value for argument `channels`. Can only '
                       'replicate 1-channel images. Received: channels=%r for '
                       'images with %d channels' % (channels, images.shape[-1]))
    images = np.repeat(images, channels, axis=-1)
  return images


@gin.configurable
def load_data(dataset: str = 'fashion_mnist',
              train_examples: int = 0,
              test_examples: int = 0,
              image_size: Optional[int] = None,
              channels: Optional[int] = None,
              data_dir: str = datasets.FASHION_MNIST_DIR,
              seed: int = 0) -> Data:
  """Loads (a subset of) an image classification dataset.

  Args:
    dataset: 'fashion_mnist' (offline IDX files when present) or any
      tensorflow-datasets image classification name, e.g. 'cifar10'.
    train_examples: training examples used, a fixed random subset (0: all).
    test_examples: test examples used, the first ones (0: all).
    image_size: resize images to image_size x image_size (None: keep).
    channels: replicate 1-channel images to this many channels (None: keep).
    data_dir: directory of the Fashion-MNIST IDX files.
    seed: seed of the training subset.

  Returns:
    A `Data` tuple of float32 images in [0, 1] and int64 labels.
  """
  (x_train, y_train), (x_test, y_test) = datasets.load_dataset(dataset,
                                                               data_dir)
  if train_examples and train_examples < len(x_train):
    idx = np.random.RandomState(seed).permutation(len(x_train))
    idx = np.sort(idx[:train_examples])
    x_train, y_train = x_train[idx], y_train[idx]
  if test_examples and test_examples < len(x_test):
    x_test, y_test = x_test[:test_examples], y_test[:test_examples]
  x_train = _reshape_images(x_train, image_size, channels)
  x_test = _reshape_images(x_test, image_size, channels)
  logging.info('Data %s: train %s, test %s', dataset, x_train.shape,
               x_test.shape)
  return Data(x_train, y_train, x_test, y_test)


def input_shape(data: Data) -> Tuple[int, int, int]:
  return tuple(int(d) for d in data.x_train.shape[1:])


def num_classes(data: Data) -> int:
  return int(max(data.y_train.max(), data.y_test.max())) + 1
