"""An OpRegularizer that keeps at least a few channels of its group alive.

MorphNet removes a channel group whose regularization values all fall under
the alive threshold. For a group on the only path to a model output (the
convs of a plain chain), that disconnects the network: the structure cannot
be rebuilt. `MinimumAliveRegularizer` wraps a group's regularizer so that,
when fewer than `minimum` channels are alive, the channels with the largest
regularization values count as alive up to `minimum`. The regularization
vector (and so the term) is unchanged; the cost, which reads alive vectors,
counts the kept channels.

The channels of one group of layers may be held by several regularizers:
the manager cuts the group feeding a depthwise conv with a depth multiplier
above 1 into one op group per channel (as the original's
DepthwiseConvolutionOpHandler does). `keep_group_alive` keeps `minimum`
channels of all of them together, counted on whole channels: the layer
disconnects the network only when every one of them is dead.

`keep_sets_alive` does the same for sets of groups that disconnect the
network only together (two parallel branches joined by a concatenation):
when every group of a set is dead, the group with the largest
regularization value keeps its `minimum` strongest channels.
"""

from typing import Dict, List, Sequence, Union

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers

__all__ = ['AliveVectorRegularizer', 'MinimumAliveRegularizer',
           'keep_group_alive', 'keep_sets_alive']


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
    self.minimum = _checked_minimum(minimum, 'MinimumAliveRegularizer')
    super().__init__(regularizer, _with_minimum(
        tf.cast(regularizer.regularization_vector, tf.float32),
        regularizer.alive_vector, self.minimum))


def _checked_minimum(minimum, where: str) -> int:
  if int(minimum) < 1:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `minimum` of %s. Expected an integer '
        '>= 1. Received: minimum=%r' % (where, minimum))
  return int(minimum)


def _with_minimum(values: tf.Tensor, alive: tf.Tensor,
                  minimum: int) -> tf.Tensor:
  """`alive`, or with the `minimum` largest `values` alive when fewer are."""
  keep = min(minimum, int(values.shape[-1]))
  # One-hot of the `keep` largest values (ties broken by index, so never
  # more than `keep` channels are added).
  strongest = _strongest(values, keep)
  enough = tf.reduce_sum(tf.cast(alive, tf.int32)) >= keep
  return tf.where(enough, alive, tf.logical_or(alive, strongest))


def _strongest(values: tf.Tensor, keep: int) -> tf.Tensor:
  """Bool vector: the `keep` largest of `values` (ties broken by index)."""
  size = int(values.shape[-1])
  top = tf.math.top_k(values, k=keep).indices
  return tf.scatter_nd(top[:, None], tf.ones([keep], tf.bool), [size])


def _unique(regularizers) -> List[generic_regularizers.OpRegularizer]:
  """`regularizers` without repeats (by identity), in order."""
  return list({id(r): r for r in regularizers}.values())


def _size(regularizer: generic_regularizers.OpRegularizer) -> int:
  return int(regularizer.regularization_vector.shape[-1])


def _split(vector: tf.Tensor, regularizers) -> List[tf.Tensor]:
  """`vector` (over the channels of `regularizers` in order) cut per
  regularizer."""
  if len(regularizers) == 1:
    return [vector]
  return tf.split(vector, [_size(r) for r in regularizers])


def keep_group_alive(regularizers: Sequence[
    generic_regularizers.OpRegularizer], minimum: int = 1
                     ) -> Dict[int, AliveVectorRegularizer]:
  """Keeps `minimum` channels alive among the regularizers of one group.

  The regularizers hold the channels of one group of layers, in channel
  order: several when the manager cut the group into slices (one per
  channel before a depthwise conv with a depth multiplier above 1). When
  fewer than `minimum` of all their channels are alive, the channels with
  the largest regularization values (the first in that order on a tie)
  count as alive up to `minimum`: the group keeps `minimum` channels, not
  `minimum` per slice. Call it in the graph of the regularizers.

  Args:
    regularizers: OpRegularizers (a repeated one counts once).
    minimum: channels to keep (>= 1; a group with fewer keeps them all).

  Returns:
    {id(regularizer): its AliveVectorRegularizer} (a
    `MinimumAliveRegularizer` for a group of one regularizer).

  Raises:
    InvalidArgumentError: for minimum < 1 or no regularizers.
  """
  minimum = _checked_minimum(minimum, 'keep_group_alive')
  members = _unique(regularizers)
  if not members:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `regularizers` of keep_group_alive. '
        'Expected at least one OpRegularizer. Received: regularizers=%r' %
        (list(regularizers),))
  if len(members) == 1:
    return {id(members[0]): MinimumAliveRegularizer(members[0], minimum)}
  values = tf.concat([tf.cast(r.regularization_vector, tf.float32)
                      for r in members], 0)
  alive = tf.concat([tf.cast(r.alive_vector, tf.bool) for r in members], 0)
  kept = _split(_with_minimum(values, alive, minimum), members)
  return {id(r): AliveVectorRegularizer(r, v) for r, v in zip(members, kept)}


_Group = Union[generic_regularizers.OpRegularizer,
              Sequence[generic_regularizers.OpRegularizer]]


def keep_sets_alive(sets: Sequence[Sequence[_Group]], minimum: int = 1
                    ) -> Dict[int, AliveVectorRegularizer]:
  """Keeps channels alive in sets of groups that must not all die.

  A group of a set is an OpRegularizer, or a list of the OpRegularizers
  holding its channels in order (`keep_group_alive`). The sets are taken
  in order. When no channel of any group of a set is alive (counting the
  channels kept for the sets before it), the group with the largest
  regularization value (the first of them on a tie) keeps its `minimum`
  largest channels, counted over all its regularizers (all of them if it
  has fewer). Call it in the graph of the regularizers.

  Args:
    sets: lists of groups (a regularizer may be in several sets).
    minimum: channels to keep (>= 1).

  Returns:
    {id(regularizer): its AliveVectorRegularizer} for every regularizer of
    a set.

  Raises:
    InvalidArgumentError: for minimum < 1.
  """
  minimum = _checked_minimum(minimum, 'keep_sets_alive')
  members, alive, grouped = {}, {}, []
  for groups in sets:
    found = {}  # (ids of a group's regularizers) -> the group.
    for group in groups:
      group = _unique(group if isinstance(group, (list, tuple))
                      else [group])
      if group:
        found.setdefault(tuple(id(r) for r in group), group)
      for regularizer in group:
        if id(regularizer) not in members:
          members[id(regularizer)] = regularizer
          alive[id(regularizer)] = regularizer.alive_vector
    grouped.append(list(found.values()))
  for groups in grouped:
    if not groups:
      continue
    values = [tf.concat([tf.cast(r.regularization_vector, tf.float32)
                         for r in group], 0) for group in groups]
    none_alive = tf.logical_not(tf.reduce_any(tf.stack(
        [tf.reduce_any(alive[id(r)]) for group in groups for r in group])))
    largest = tf.stack([tf.reduce_max(v) for v in values])
    # The first group holding the largest value.
    first = tf.reduce_min(tf.where(
        tf.equal(largest, tf.reduce_max(largest)),
        tf.range(len(groups)), len(groups)))
    for index, (group, value) in enumerate(zip(groups, values)):
      keep = min(minimum, int(value.shape[-1]))
      revive = tf.logical_and(none_alive, tf.equal(first, index))
      kept = _split(tf.logical_and(revive, _strongest(value, keep)), group)
      for regularizer, part in zip(group, kept):
        alive[id(regularizer)] = tf.logical_or(alive[id(regularizer)], part)
  return {key: AliveVectorRegularizer(members[key], alive[key])
          for key in members}
