"""An OpRegularizer for channels that are never regularized: all alive, zero."""

import tensorflow as tf

from morph_net.framework import generic_regularizers

__all__ = ['ConstantOpRegularizer']


class ConstantOpRegularizer(generic_regularizers.OpRegularizer):
  """Regularization vector of zeros; every channel alive.

  Args:
    size: number of channels.
  """

  def __init__(self, size: int):
    self._regularization_vector = tf.zeros([size], dtype=tf.float32)
    self._alive_vector = tf.ones([size], dtype=tf.bool)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
