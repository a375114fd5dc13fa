"""GammaL1Regularizer: |gamma| of a batch norm scale; alive if above a threshold."""

import tensorflow as tf

from morph_net.framework import generic_regularizers

__all__ = ['GammaL1Regularizer']


class GammaL1Regularizer(generic_regularizers.OpRegularizer):
  """Regularization vector |gamma|; alive vector |gamma| > gamma_threshold.

  Args:
    gamma: the batch norm scale vector (a tensor reading the variable).
    gamma_threshold: channels with |gamma| at or below it are dead.
  """

  def __init__(self, gamma: tf.Tensor, gamma_threshold: float):
    self._gamma = tf.cast(gamma, tf.float32)
    abs_gamma = tf.abs(self._gamma)
    self._regularization_vector = abs_gamma
    self._alive_vector = abs_gamma > gamma_threshold

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
