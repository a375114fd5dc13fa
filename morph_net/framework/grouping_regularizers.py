"""Regularizers that combine the sources of one channel group."""

from typing import Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers


def _check_regularizers(regularizers):
  if not regularizers:
    raise ValueError(
        'Invalid value for argument `regularizers_to_group`. Expected a '
        'non-empty list of OpRegularizer, received: %r.' % (regularizers,))
  sizes = {r.regularization_vector.shape[0] for r in regularizers}
  if len(sizes) > 1:
    raise ValueError(
        'Cannot group regularizers of different sizes: %s.' % sorted(
            str(s) for s in sizes))


class MaxGroupingRegularizer(generic_regularizers.OpRegularizer):
  """Element-wise max of the regularization vectors; alive if any is alive.

  Args:
    regularizers_to_group: list of OpRegularizer of the same size.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer]):
    _check_regularizers(regularizers_to_group)
    self._regularization_vector = tf.reduce_max(
        tf.stack([r.regularization_vector for r in regularizers_to_group]), 0)
    self._alive_vector = tf.reduce_any(
        tf.stack([r.alive_vector for r in regularizers_to_group]), 0)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


class L2GroupingRegularizer(generic_regularizers.OpRegularizer):
  """L2 norm of the regularization vectors; alive if the norm > threshold.

  Args:
    regularizers_to_group: list of OpRegularizer of the same size.
    threshold: alive threshold on the grouped L2 norm.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer], threshold: float):
    _check_regularizers(regularizers_to_group)
    stacked = tf.stack([r.regularization_vector for r in regularizers_to_group])
    self._regularization_vector = tf.sqrt(tf.reduce_sum(tf.square(stacked), 0))
    self._alive_vector = self._regularization_vector > threshold

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
