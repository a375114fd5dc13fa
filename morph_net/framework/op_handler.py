"""The op handler interface: how ops of one type group their channels.

An op handler tells the `OpRegularizerManager` about the ops of the types it
is registered for: whether an op is a source of regularization, whether its
output channels pass through from its inputs, and how to group its channels
with those of its neighbours (`assign_grouping`). Source handlers also create
the op regularizer of a source op slice.

This is the four-member contract of the original MorphNet; handlers written
for it run unchanged. The manager processes ops from a work queue: a handler
groups op slices with `op_reg_manager.group_op_slices`, reslices ops with
`op_reg_manager.slice_op` (usually through `op_handler_util`), and queues the
neighbours it could not group yet with `op_reg_manager.process_ops` (or
itself, to run again later, with `process_ops_last`).
"""

import abc
from typing import Optional, Tuple

import tensorflow as tf

from morph_net.framework import graph_util
from morph_net.framework import op_handler_util

__all__ = ['OpHandler']


class OpHandler(abc.ABC):
  """Base class of op handlers.

  Subclasses implement `is_source_op`, `is_passthrough` and
  `assign_grouping`; source handlers also implement `create_regularizer`.

  Two optional hooks are project extensions; handlers written for the
  original MorphNet do not need them:

  * `is_source(op)`: whether this particular op is a source, for handlers
    registered for a type whose ops are only sometimes sources (a `Mul` is a
    source when it applies a batch-norm scale or a channel gate).
  * `get_output_channel_range(op, output_index)`: where an output tensor's
    channels lie in the op's channel space, for ops with several outputs that
    each carry part of the channels (Split).
  """

  @property
  @abc.abstractmethod
  def is_source_op(self) -> bool:
    """Whether ops of this handler are regularization sources."""

  @property
  @abc.abstractmethod
  def is_passthrough(self) -> bool:
    """Whether neighbours may group their channels with this op's channels.

    A convolution is not passthrough: the op before it must not group with
    it, since its output channels are a new channel space.
    """

  @abc.abstractmethod
  def assign_grouping(self, op: tf.Operation, op_reg_manager) -> None:
    """Groups the channels of `op` with its neighbours' through the manager.

    Args:
      op: the tf.Operation to group.
      op_reg_manager: the OpRegularizerManager that tracks slices and groups.
    """

  def create_regularizer(self, op_slice):
    """Creates the OpRegularizer of a source op slice.

    Args:
      op_slice: an `op_regularizer_manager.OpSlice` of a source op.

    Returns:
      An OpRegularizer for the channels of the slice.

    Raises:
      NotImplementedError: for handlers that are not sources.
    """
    raise NotImplementedError(
        '%s is not a source op handler; cannot create a regularizer for op '
        '%s.' % (type(self).__name__, graph_util.describe_op(op_slice.op)))

  def is_source(self, op: tf.Operation) -> bool:
    """Whether `op` is a source; defaults to `is_source_op` (per type)."""
    del op  # Unused by handlers that decide by type.
    return self.is_source_op

  def get_output_channel_range(
      self, op: tf.Operation, output_index: int) -> Optional[Tuple[int, int]]:
    """Maps output `output_index` of `op` into the op's channel space.

    Args:
      op: the op.
      output_index: index into `op.outputs`.

    Returns:
      (start, size) of the output's channels in the op's channel space, or
      None when the output is not a channel tensor of the op. By default an
      output with as many channels as the op covers all of them.
    """
    size = graph_util.get_num_channels(op.outputs[output_index])
    if size is None or size != op_handler_util.get_op_size(op):
      return None
    return (0, size)
