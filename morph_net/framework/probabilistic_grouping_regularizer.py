"""Grouping of probabilistic (gating) regularizers.

Each source of the group is a gate whose regularization vector holds, per
channel, the probability (or the sampled mask) of the gate being open. The
grouped channel is open if any of the gates is, so its probability is
1 - prod_i(1 - p_i), and it is alive if any source says it is alive (as in
the original library).
"""

from typing import Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers
from morph_net.framework import grouping_regularizers

__all__ = ['ProbabilisticGroupingRegularizer']


class ProbabilisticGroupingRegularizer(generic_regularizers.OpRegularizer):
  """Combines gate probabilities p_i into 1 - prod_i(1 - p_i).

  Args:
    regularizers_to_group: list of at least 2 OpRegularizer of one size
      whose regularization vectors are in [0, 1] (ProbGatingRegularizer).

  Raises:
    InvalidArgumentError: for fewer than 2 regularizers or different sizes.
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer]):
    grouping_regularizers.check_regularizers(regularizers_to_group)
    stacked = tf.stack([r.regularization_vector for r in regularizers_to_group])
    self._regularization_vector = 1.0 - tf.reduce_prod(1.0 - stacked, axis=0)
    self._alive_vector = tf.reduce_any(
        tf.stack([r.alive_vector for r in regularizers_to_group]), axis=0)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
