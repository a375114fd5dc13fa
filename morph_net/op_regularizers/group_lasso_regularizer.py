"""GroupLassoRegularizer: per-output-channel norm of a weight tensor."""

from typing import Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers


class GroupLassoRegularizer(generic_regularizers.OpRegularizer):
  """Group lasso over every weight dimension but the output channels.

  regularization = (1 - l1_fraction) * sqrt(mean(w^2)) + l1_fraction * mean(|w|)
  with the means taken over `reduce_dims`, as in the original library (the
  mean keeps the threshold independent of the kernel size).

  Args:
    weight_tensor: the weights (for example a conv kernel).
    reduce_dims: the dimensions to reduce (all but the output one).
    threshold: channels whose regularization is at or below it are dead.
    l1_fraction: weight of the L1 part, in [0, 1].

  Raises:
    ValueError: if l1_fraction is outside [0, 1].
  """

  def __init__(self, weight_tensor: tf.Tensor, reduce_dims: Sequence[int],
               threshold: float, l1_fraction: float = 0.0):
    if not 0.0 <= l1_fraction <= 1.0:
      raise ValueError(
          'Invalid value for argument `l1_fraction`. Expected a number in '
          '[0, 1]. Received: l1_fraction=%r' % (l1_fraction,))
    weights = tf.cast(weight_tensor, tf.float32)
    reduce_dims = list(reduce_dims)
    l2 = tf.sqrt(tf.reduce_mean(tf.square(weights), axis=reduce_dims))
    if l1_fraction:
      l1 = tf.reduce_mean(tf.abs(weights), axis=reduce_dims)
      self._regularization_vector = (1.0 - l1_fraction) * l2 + l1_fraction * l1
    else:
      self._regularization_vector = l2
    self._alive_vector = self._regularization_vector > threshold

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
