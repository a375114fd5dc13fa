"""OpRegularizers that concatenate or slice other OpRegularizers."""

from typing import Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers

__all__ = ['ConcatRegularizer', 'SlicingReferenceRegularizer']


class ConcatRegularizer(generic_regularizers.OpRegularizer):
  """The concatenation of several regularizers (for example a concat op).

  Args:
    regularizers_to_concatenate: list of OpRegularizer, in channel order.

  Raises:
    InvalidArgumentError: when a regularizer's alive and regularization
      vectors have different sizes.
  """

  def __init__(self, regularizers_to_concatenate: Sequence[
      generic_regularizers.OpRegularizer]):
    for regularizer in regularizers_to_concatenate:
      if not generic_regularizers.dimensions_are_compatible(regularizer):
        raise errors.InvalidArgumentError(
            'Cannot concatenate %s: its regularization vector (shape %s) and '
            'alive vector (shape %s) differ in size.' % (
                type(regularizer).__name__,
                regularizer.regularization_vector.shape,
                regularizer.alive_vector.shape))
    self._regularization_vector = tf.concat(
        [r.regularization_vector for r in regularizers_to_concatenate], 0)
    self._alive_vector = tf.concat(
        [r.alive_vector for r in regularizers_to_concatenate], 0)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


class SlicingReferenceRegularizer(generic_regularizers.OpRegularizer):
  """A slice of another regularizer, created lazily.

  Args:
    get_regularizer_to_slice: callable returning the OpRegularizer to slice
      (lazy, so that the referenced regularizer may be created later).
    begin: first channel of the slice.
    size: number of channels.
  """

  def __init__(self, get_regularizer_to_slice, begin: int, size: int):
    self._get_regularizer_to_slice = get_regularizer_to_slice
    self._begin = begin
    self._size = size
    self._regularization_vector = None
    self._alive_vector = None

  @property
  def regularization_vector(self):
    if self._regularization_vector is None:
      self._regularization_vector = tf.slice(
          self._get_regularizer_to_slice().regularization_vector,
          [self._begin], [self._size])
    return self._regularization_vector

  @property
  def alive_vector(self):
    if self._alive_vector is None:
      self._alive_vector = tf.slice(
          self._get_regularizer_to_slice().alive_vector, [self._begin],
          [self._size])
    return self._alive_vector
