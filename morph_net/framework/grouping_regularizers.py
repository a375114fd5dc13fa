"""Regularizers that combine the sources of one channel group.

When several ops must keep or drop the same channels (the two inputs of a
residual Add, a conv and the depthwise conv it feeds), each of them brings a
regularizer for those channels. A grouping regularizer turns them into one:
channel j of the group is regularized by a combination of the j-th entries,
and is alive according to a combined rule. The default is the maximum
(`MaxGroupingRegularizer`, as in the original library); `L2GroupingRegularizer`
takes the L2 norm across the group (a group lasso over the sources).
"""

import functools
from typing import Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers
from morph_net.framework import safe_math

__all__ = ['DEFAULT_THRESHOLD', 'MaxGroupingRegularizer',
           'L2GroupingRegularizer', 'lazy_square', 'check_regularizers']

# Alive threshold of the L2 grouping regularizer (the original's default).
DEFAULT_THRESHOLD = 0.01


def check_regularizers(regularizers_to_group, what: str = 'regularizers_to_group'):
  """Checks that there are at least two regularizers of one static size.

  Args:
    regularizers_to_group: a list of OpRegularizer.
    what: the argument name used in the error message.

  Raises:
    InvalidArgumentError: for fewer than two regularizers, or known sizes that differ.
  """
  if len(regularizers_to_group) < 2:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `%s`. Expected a list of at least 2 '
        'OpRegularizer (a group of one needs no grouping regularizer). '
        'Received: %r' % (what, list(regularizers_to_group)))
  sizes = set()
  for regularizer in regularizers_to_group:
    size = tf.compat.dimension_value(
        regularizer.regularization_vector.shape.with_rank(1)[0])
    if size is not None:
      sizes.add(int(size))
  if len(sizes) > 1:
    raise errors.InvalidArgumentError(
        'Cannot group regularizers of different sizes: %s. All regularizers '
        'of a group must cover the same channels.' % sorted(sizes))


class MaxGroupingRegularizer(generic_regularizers.OpRegularizer):
  """Element-wise max of the regularization vectors; alive if any is alive.

  Args:
    regularizers_to_group: list of at least 2 OpRegularizer of one size.

  Raises:
    InvalidArgumentError: see `check_regularizers`.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer]):
    check_regularizers(regularizers_to_group)
    self._regularization_vector = functools.reduce(
        tf.maximum, [r.regularization_vector for r in regularizers_to_group])
    self._alive_vector = functools.reduce(
        tf.logical_or, [r.alive_vector for r in regularizers_to_group])

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


class L2GroupingRegularizer(generic_regularizers.OpRegularizer):
  """R_j = sqrt(sum_i r_ij^2); channel j is alive when R_j > threshold.

  The alive vector is recomputed from the grouped norm, not taken from the
  sources. The gradient stays finite where every source is 0.

  Args:
    regularizers_to_group: list of at least 2 OpRegularizer of one size.
    threshold: alive threshold on the grouped L2 norm.

  Raises:
    InvalidArgumentError: see `check_regularizers`.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer],
               threshold: float = DEFAULT_THRESHOLD):
    check_regularizers(regularizers_to_group)
    self._regularization_vector = safe_math.safe_sqrt(tf.add_n(
        [lazy_square(r.regularization_vector) for r in regularizers_to_group]))
    self._alive_vector = self._regularization_vector > threshold

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


def lazy_square(tensor: tf.Tensor) -> tf.Tensor:
  """tensor ** 2, reusing the argument when `tensor` is the output of a Sqrt.

  Args:
    tensor: a float tensor.

  Returns:
    The input of the Sqrt op that produced `tensor`, or tf.square(tensor)
    (always the latter for eager tensors, which have no producing op).
  """
  try:
    op = tensor.op
  except AttributeError:  # An eager tensor.
    op = None
  if op is not None and op.type == 'Sqrt':
    return op.inputs[0]
  return tf.square(tensor)
