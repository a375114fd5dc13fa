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

from typing import List, Sequence

import numpy as np
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
    self._weights = tf.cast(weight_tensor, tf.float32)
    self._reduce_dims = list(reduce_dims)
    self._threshold = threshold
    self._l1_fraction = l1_fraction
    self._vectors = None  # (regularization vector, alive vector) once built.
    if not tf.is_symbolic_tensor(self._weights):
      self._vectors = self._build()  # Eagerly, under the caller's tape.

  @property
  def regularization_vector(self):
    return self._built_vectors()[0]

  @property
  def alive_vector(self):
    return self._built_vectors()[1]

  def _means(self):
    """Per channel mean(w^2) and (with an L1 part) mean(|w|), or None."""
    weights, dims = self._weights, self._reduce_dims
    return (tf.reduce_mean(tf.square(weights), axis=dims),
            tf.reduce_mean(tf.abs(weights), axis=dims)
            if self._l1_fraction else None)

  def _built_vectors(self):
    if self._vectors is None:
      with self._weights.graph.as_default():
        self._vectors = self._build()
    return self._vectors

  def _build(self):
    squares, absolutes = self._means()
    return _vectors(squares, absolutes, self._l1_fraction, self._threshold)

  @classmethod
  def build_together(cls, regularizers: Sequence[
      generic_regularizers.OpRegularizer]) -> None:
    """Builds the vectors of the GroupLassoRegularizers among `regularizers`.

    The per-channel means are built per regularizer (the weights differ in
    shape); those of one graph, outside TF1 control flow, with a static
    number of channels are concatenated and share one square root, one
    comparison and one split (about 12 graph ops per conv become 3). The
    values and gradients are those of building each on its own.

    Args:
      regularizers: op regularizers of any types.
    """
    batches = {}  # graph -> [GroupLassoRegularizer]
    for regularizer in regularizers:
      weights = getattr(regularizer, '_weights', None)
      if (isinstance(regularizer, cls) and regularizer._vectors is None and
          tf.is_symbolic_tensor(weights) and
          weights.op._get_control_flow_context() is None):  # pylint: disable=protected-access
        batches.setdefault(weights.graph, []).append(regularizer)
    for graph, batch in batches.items():
      if len(batch) > 1:
        with graph.as_default():
          cls._build_batch(batch)

  @staticmethod
  def _build_batch(batch: List['GroupLassoRegularizer']) -> None:
    """Builds the vectors of `batch` (one graph) with shared final ops."""
    means, together = [], []
    for regularizer in batch:
      squares, absolutes = regularizer._means()
      size = (tf.compat.dimension_value(squares.shape[0])
              if squares.shape.rank == 1 else None)
      if size is None:  # Unknown channel count: built on its own.
        regularizer._vectors = _vectors(squares, absolutes,
                                        regularizer._l1_fraction,
                                        regularizer._threshold)
        continue
      means.append((squares, absolutes, size))
      together.append(regularizer)
    if not together:
      return
    sizes = [size for _, _, size in means]
    fractions = _per_channel([r._l1_fraction for r in together], sizes)
    absolutes = None
    if any(r._l1_fraction for r in together):
      absolutes = tf.concat(
          [a if a is not None else tf.zeros([size])
           for _, a, size in means], 0)
    vectors = _vectors(tf.concat([s for s, _, _ in means], 0), absolutes,
                       fractions,
                       _per_channel([r._threshold for r in together], sizes))
    for regularizer, reg_vector, alive_vector in zip(
        together, tf.split(vectors[0], sizes), tf.split(vectors[1], sizes)):
      regularizer._vectors = (reg_vector, alive_vector)


def _per_channel(values, sizes):
  """One value if all are equal, else a float32 vector of each per channel."""
  if len(set(values)) == 1:
    return values[0]
  return np.repeat(np.array(values, np.float64), sizes).astype(np.float32)


def _vectors(squares, absolutes, l1_fraction, threshold):
  """(regularization vector, alive vector) from the per-channel means."""
  l2 = safe_math.safe_sqrt(squares)
  if absolutes is None:
    regularization = l2
  else:
    regularization = (1.0 - l1_fraction) * l2 + l1_fraction * absolutes
  return regularization, regularization > threshold

