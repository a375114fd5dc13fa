"""GroupLassoRegularizer: per-output-channel norm of a weight tensor.

All the weights that produce one output channel form one group (Wen et al.,
"Learning Structured Sparsity in Deep Neural Networks",
https://arxiv.org/abs/1608.03665), and the group's norm is the channel's
regularization. As in the original library the norm is normalized by the
group size, so a threshold means the same for a 1x1 and a 7x7 kernel:

  r = (1 - l1_fraction) * sqrt(mean(w^2)) + l1_fraction * mean(|w|)

with the means over `reduce_dims` (every dimension but the output channels).
The square root has a finite gradient (0) where a whole group is exactly 0,
so a zero filter or a zero-initialized layer never produces NaN.
"""

from typing import Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers
from morph_net.framework import safe_math

__all__ = ['GroupLassoRegularizer']


class GroupLassoRegularizer(generic_regularizers.OpRegularizer):
  """Group lasso over every weight dimension but the output channels.

  Args:
    weight_tensor: the weights (for example a conv kernel [kh, kw, in, out]).
    reduce_dims: the dimensions to reduce (all but the output one).
    threshold: channels whose regularization is at or below it are dead.
    l1_fraction: weight of the L1 part, in [0, 1].

  Raises:
    InvalidArgumentError: if l1_fraction is outside [0, 1].
  """

  def __init__(self, weight_tensor: tf.Tensor, reduce_dims: Sequence[int],
               threshold: float, l1_fraction: float = 0.0):
    if not 0.0 <= l1_fraction <= 1.0:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `l1_fraction`. Expected a number in '
          '[0, 1]. Received: l1_fraction=%r' % (l1_fraction,))
    weights = tf.cast(weight_tensor, tf.float32)
    reduce_dims = list(reduce_dims)
    l2 = safe_math.safe_sqrt(
        tf.reduce_mean(tf.square(weights), axis=reduce_dims))
    if l1_fraction:
      l1 = tf.reduce_mean(tf.abs(weights), axis=reduce_dims)
      self._regularization_vector = (1.0 - l1_fraction) * l2 + l1_fraction * l1
    else:
      self._regularization_vector = l2
    self._threshold = threshold
    self._alive_vector = self._regularization_vector > threshold

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
