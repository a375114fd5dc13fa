"""An OpRegularizer that keeps at least a few channels of its group alive.

MorphNet removes a channel group whose regularization values all fall under
the alive threshold. For a group on the only path to a model output (the
convs of a plain chain), that disconnects the network: the structure cannot
be rebuilt. `MinimumAliveRegularizer` wraps a group's regularizer so that,
when fewer than `minimum` channels are alive, the channels with the largest
regularization values count as alive up to `minimum`. The regularization
vector (and so the term) is unchanged; the cost, which reads alive vectors,
counts the kept channels.
"""

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers

__all__ = ['MinimumAliveRegularizer']


class MinimumAliveRegularizer(generic_regularizers.OpRegularizer):
  """`regularizer` with at least `minimum` alive channels.

  Args:
    regularizer: the OpRegularizer of a channel group.
    minimum: the least number of alive channels (at most the group's size:
      a larger minimum keeps every channel).

  Raises:
    InvalidArgumentError: for minimum < 1.
  """

  def __init__(self, regularizer: generic_regularizers.OpRegularizer,
               minimum: int = 1):
    if int(minimum) < 1:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `minimum` of MinimumAliveRegularizer. '
          'Expected an integer >= 1. Received: minimum=%r' % (minimum,))
    self.regularizer = regularizer
    self.minimum = int(minimum)
    values = tf.cast(regularizer.regularization_vector, tf.float32)
    alive = regularizer.alive_vector
    size = int(values.shape[-1])
    keep = min(self.minimum, size)
    # One-hot of the `keep` largest values (ties broken by index, so never
    # more than `keep` channels are added).
    top = tf.math.top_k(values, k=keep).indices
    strongest = tf.scatter_nd(top[:, None], tf.ones([keep], tf.bool), [size])
    enough = tf.reduce_sum(tf.cast(alive, tf.int32)) >= keep
    self._alive_vector = tf.where(enough, alive,
                                  tf.logical_or(alive, strongest))

  @property
  def regularization_vector(self):
    return self.regularizer.regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
