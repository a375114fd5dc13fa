"""An OpRegularizer that keeps at least a few channels of its group alive.

MorphNet removes a channel group whose regularization values all fall under
the alive threshold. For a group on the only path to a model output (the
convs of a plain chain), that disconnects the network: the structure cannot
be rebuilt. `MinimumAliveRegularizer` wraps a group's regularizer so that,
when fewer than `minimum` channels are alive, the channels with the largest
regularization values count as alive up to `minimum`. The regularization
vector (and so the term) is unchanged; the cost, which reads alive vectors,
counts the kept channels.

`keep_sets_alive` does the same for sets of groups that disconnect the
network only together (two parallel branches joined by a concatenation):
when every group of a set is dead, the group with the largest
regularization value keeps its `minimum` strongest channels.
"""

from typing import Dict, Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers

__all__ = ['AliveVectorRegularizer', 'MinimumAliveRegularizer',
           'keep_sets_alive']


class AliveVectorRegularizer(generic_regularizers.OpRegularizer):
  """`regularizer` with another alive vector (its regularization vector).

  Args:
    regularizer: an OpRegularizer.
    alive_vector: a bool vector of its size.
  """

  def __init__(self, regularizer: generic_regularizers.OpRegularizer,
               alive_vector: tf.Tensor):
    self.regularizer = regularizer
    self._alive_vector = alive_vector

  @property
  def regularization_vector(self):
    return self.regularizer.regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


class MinimumAliveRegularizer(AliveVectorRegularizer):
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
    self.minimum = int(minimum)
    values = tf.cast(regularizer.regularization_vector, tf.float32)
    alive = regularizer.alive_vector
    size = int(values.shape[-1])
    keep = min(self.minimum, size)
    # One-hot of the `keep` largest values (ties broken by index, so never
    # more than `keep` channels are added).
    strongest = _strongest(values, keep)
    enough = tf.reduce_sum(tf.cast(alive, tf.int32)) >= keep
    super().__init__(regularizer, tf.where(enough, alive,
                                           tf.logical_or(alive, strongest)))


def _strongest(values: tf.Tensor, keep: int) -> tf.Tensor:
  """Bool vector: the `keep` largest of `values` (ties broken by index)."""
  size = int(values.shape[-1])
  top = tf.math.top_k(values, k=keep).indices
  return tf.scatter_nd(top[:, None], tf.ones([keep], tf.bool), [size])


def keep_sets_alive(sets: Sequence[Sequence[
    generic_regularizers.OpRegularizer]], minimum: int = 1
                    ) -> Dict[int, AliveVectorRegularizer]:
  """Keeps channels alive in sets of groups that must not all die.

  The sets are taken in order. When no channel of any regularizer of a set
  is alive (counting the channels kept for the sets before it), the
  regularizer with the largest regularization value (the first of them on
  a tie) keeps its `minimum` largest channels (all of them if it has
  fewer). Call it in the graph of the regularizers.

  Args:
    sets: lists of OpRegularizers (a regularizer may be in several sets).
    minimum: channels to keep (>= 1).

  Returns:
    {id(regularizer): its AliveVectorRegularizer} for every regularizer of
    a set.

  Raises:
    InvalidArgumentError: for minimum < 1.
  """
  if int(minimum) < 1:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `minimum` of keep_sets_alive. Expected '
        'an integer >= 1. Received: minimum=%r' % (minimum,))
  members, alive = {}, {}
  for regularizers in sets:
    for regularizer in regularizers:
      if id(regularizer) not in members:
        members[id(regularizer)] = regularizer
        alive[id(regularizer)] = regularizer.alive_vector
  for regularizers in sets:
    keys = list(dict.fromkeys(id(r) for r in regularizers))
    if not keys:
      continue
    values = [tf.cast(members[k].regularization_vector, tf.float32)
              for k in keys]
    none_alive = tf.logical_not(tf.reduce_any(tf.stack(
        [tf.reduce_any(alive[k]) for k in keys])))
    largest = tf.stack([tf.reduce_max(v) for v in values])
    # The first regularizer holding the largest value.
    first = tf.reduce_min(tf.where(
        tf.equal(largest, tf.reduce_max(largest)),
        tf.range(len(keys)), len(keys)))
    for index, (key, value) in enumerate(zip(keys, values)):
      keep = min(int(minimum), int(value.shape[-1]))
      revive = tf.logical_and(none_alive, tf.equal(first, index))
      alive[key] = tf.logical_or(
          alive[key], tf.logical_and(revive, _strongest(value, keep)))
  return {key: AliveVectorRegularizer(members[key], alive[key])
          for key in members}
