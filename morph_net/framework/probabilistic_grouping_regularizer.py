"""Grouping of probabilistic (gating) regularizers.

A channel of a group is alive if any of the group's gates is open, so the
probability that it is alive is 1 - prod(1 - p_i).
"""

from typing import Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers
from morph_net.framework import grouping_regularizers


class ProbabilisticGroupingRegularizer(generic_regularizers.OpRegularizer):
  """Combines gate probabilities: 1 - prod(1 - p); alive if any is alive.

  Args:
    regularizers_to_group: list of OpRegularizer whose regularization vectors
      are probabilities (or masks) in [0, 1].
  """

  def __init__(self, regularizers_to_group: Sequence[
      generic_regularizers.OpRegularizer]):
    grouping_regularizers._check_regularizers(regularizers_to_group)  # pylint: disable=protected-access
    stacked = tf.stack([r.regularization_vector for r in regularizers_to_group])
    self._regularization_vector = 1.0 - tf.reduce_prod(1.0 - stacked, 0)
    self._alive_vector = tf.reduce_any(
        tf.stack([r.alive_vector for r in regularizers_to_group]), 0)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
