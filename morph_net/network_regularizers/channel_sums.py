"""Alive counts and regularization sums of channel ranges, in one vector.

The cost of a network needs, for the input and output channels of every
costed op, how many are alive and the sum of their regularization vector.
Many ops read the same channels (a conv's output, its batch norm, the ReLU
after it, the next conv's input), so the store keys them by (regularizer,
start, size) and computes all keys at once: the alive and regularization
vectors of every key are concatenated and summed per key with one
segment_sum each. Channels without a regularizer are constants (alive, with
zero regularization) and need no graph op.

A `Ref` names the channels of one tensor: the key's index in the store, or
None for channels without a regularizer, and the channel count.
"""

import collections
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['Ref', 'ChannelSums']

Ref = collections.namedtuple('Ref', ['index', 'count'])


class ChannelSums(object):
  """Alive counts and regularization sums of the channel ranges of a network.

  Args:
    op_regularizer_manager: the manager; used through `channel_range`,
      `get_regularizer` and `get_num_channels`.
  """

  def __init__(self, op_regularizer_manager):
    self._manager = op_regularizer_manager
    self._keys = []  # (regularizer, start, size, producer channels).
    self._index = {}  # (id(regularizer), start, size) -> index in _keys.
    self._vectors = None  # (number of keys, alive [K], regularization [K]).
    self._scalars = None  # (number of keys, [alive_k], [reg_k]) float32.

  def ref(self, tensor: tf.Tensor) -> Optional[Ref]:
    """The Ref of a tensor's channels, or None if its channels are unknown."""
    shape = tensor.shape
    channels = tf.compat.dimension_value(shape[-1]) if shape.rank else None
    if channels is None:
      return None
    channel_range = self._manager.channel_range(tensor)
    if channel_range is None:
      return Ref(None, int(channels))
    producer, start, size = channel_range
    regularizer = self._manager.get_regularizer(producer)
    if regularizer is None:
      return Ref(None, int(size))
    key = (id(regularizer), start, size)
    if key not in self._index:
      self._index[key] = len(self._keys)
      self._keys.append((regularizer, start, size,
                         self._manager.get_num_channels(producer)))
    return Ref(self._index[key], int(size))

  def _sums(self) -> Tuple[tf.Tensor, tf.Tensor]:
    """float64 [K] alive counts and regularization sums of all keys."""
    if self._vectors is None or self._vectors[0] != len(self._keys):
      alive, reg, sizes = [], [], []
      for regularizer, start, size, channels in self._keys:
        alive_vector = regularizer.alive_vector
        reg_vector = regularizer.regularization_vector
        if start != 0 or size != channels:
          alive_vector = alive_vector[start:start + size]
          reg_vector = reg_vector[start:start + size]
        alive.append(alive_vector)
        reg.append(reg_vector)
        sizes.append(size)
      segments = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
      sums = []
      for pieces in (alive, reg):
        total = tf.math.segment_sum(tf.cast(_concat(pieces), tf.float64),
                                    segments)
        total.set_shape([len(sizes)])
        sums.append(total)
      self._vectors = (len(self._keys), sums[0], sums[1])
    return self._vectors[1], self._vectors[2]

  def vectors(self, refs: Sequence[Ref]) -> Tuple[tf.Tensor, tf.Tensor]:
    """float64 [len(refs)] alive counts and regularization sums of `refs`."""
    if all(r.index is None for r in refs):
      counts = np.array([r.count for r in refs], np.float64)
      return tf.constant(counts), tf.zeros([len(refs)], tf.float64)
    alive, reg = self._sums()
    constants = sorted({r.count for r in refs if r.index is None})
    position = {count: len(self._keys) + i for i, count in enumerate(constants)}
    indices = np.array([position[r.count] if r.index is None else r.index
                        for r in refs], np.int32)
    if constants:
      alive = tf.concat([alive, np.array(constants, np.float64)], 0)
      reg = tf.concat([reg, tf.zeros([len(constants)], tf.float64)], 0)
    return tf.gather(alive, indices), tf.gather(reg, indices)

  def scalars(self, ref: Ref) -> Tuple[object, object]:
    """(alive count, regularization sum) of one Ref: numbers or float32."""
    if ref.index is None:
      return ref.count, 0.0
    if self._scalars is None or self._scalars[0] != len(self._keys):
      alive, reg = self._sums()
      self._scalars = (len(self._keys),
                       tf.unstack(tf.cast(alive, tf.float32)),
                       tf.unstack(tf.cast(reg, tf.float32)))
    return self._scalars[1][ref.index], self._scalars[2][ref.index]


def _concat(tensors: List[tf.Tensor]) -> tf.Tensor:
  return tensors[0] if len(tensors) == 1 else tf.concat(tensors, 0)
