"""Grouping of probabilistic (gating) regularizers.

Each source of the group is a gate whose regularization vector holds, per
channel, the probability (or the sampled mask) of the gate being open. The
grouped channel is open if any of the gates is, so its probability is
1 - prod_i(1 - p_i), and it is alive if any source says it is alive (as in
the original library).

The gradient differs from the original's. A gate regularized on its mask
(the default) has a value of exactly 0 or 1 and the gradient of its
probability (straight-through), so the chain rule of 1 - prod_i(1 - m_i)
gives gate i the factor prod_{j != i}(1 - m_j): 0 as soon as another gate
of the group is open. Every channel shared by two open gates (a residual
add of gated branches, a batch norm gated before and after a depthwise
conv) got no pressure at all, and FiGS never pruned it. Here the factor is
prod_{j != i}(1 - p_j), the partners' probabilities: the value is unchanged
and the gradient is the soft Noisy-OR's (`morph_net.framework.noisy_or`,
shared with the layer-level engine).
"""

from typing import Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers
from morph_net.framework import grouping_regularizers
from morph_net.framework import noisy_or as noisy_or_lib

__all__ = ['ProbabilisticGroupingRegularizer']


class ProbabilisticGroupingRegularizer(generic_regularizers.OpRegularizer):
  """Combines gate probabilities p_i into 1 - prod_i(1 - p_i).

  Members with a `probability` (ProbGatingRegularizer) give the gradient of
  the soft Noisy-OR (`noisy_or.noisy_or`); the value is the members' Noisy-OR.

  Args:
    regularizers_to_group: list of at least 2 OpRegularizer of one size
      whose regularization vectors are in [0, 1] (ProbGatingRegularizer).

  Raises:
    InvalidArgumentError: for fewer than 2 regularizers or different sizes.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer]):
    grouping_regularizers.check_regularizers(regularizers_to_group)
    probabilities = [getattr(r, 'probability', None)
                     for r in regularizers_to_group]
    if any(p is None for p in probabilities):
      probabilities = None
    self._regularization_vector = noisy_or_lib.noisy_or(
        [tf.cast(r.regularization_vector, tf.float32)
         for r in regularizers_to_group],
        None if probabilities is None else [
            tf.cast(p, tf.float32) for p in probabilities], tf)
    self._alive_vector = tf.reduce_any(
        tf.stack([r.alive_vector for r in regularizers_to_group]), axis=0)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
