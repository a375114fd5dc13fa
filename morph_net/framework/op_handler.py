"""The op handler interface: how one op type groups channels.

An op handler tells the `OpRegularizerManager` three things about ops of the
types it is registered for: whether an op is a source of regularization,
whether its output channels pass through from its inputs, and which output
channels of the op are the same channels as those of its inputs
(`assign_grouping`). Source handlers also create the op regularizer.
"""

import abc
from typing import Optional, Tuple

import tensorflow as tf

from morph_net.framework import op_handler_util


class OpHandler(abc.ABC):
  """Base class of op handlers.

  Subclasses implement the four members of the original contract:
  `is_source_op`, `is_passthrough`, `assign_grouping` and
  `create_regularizer`. Handlers that decide per op (for example the Keras 3
  batch-norm pattern, where only some `Mul` ops are sources) override
  `is_source(op)` as well.
  """

  @property
  @abc.abstractmethod
  def is_source_op(self) -> bool:
    """Whether ops of this handler create regularizers."""

  @property
  @abc.abstractmethod
  def is_passthrough(self) -> bool:
    """Whether output channels are the input channels (e.g. Relu, Add)."""

  @abc.abstractmethod
  def assign_grouping(self, op: tf.Operation, op_reg_manager) -> None:
    """Declares to the manager which channels of `op` are grouped with which.

    Args:
      op: the tf.Operation to group.
      op_reg_manager: the OpRegularizerManager; call its `group_tensors` or
        `group_channels`.
    """

  def create_regularizer(self, op_slice):
    """Creates the OpRegularizer of a source op slice.

    Args:
      op_slice: an OpSlice of a source op.

    Returns:
      An OpRegularizer for the channels of the slice.

    Raises:
      NotImplementedError: for handlers that are not sources.
    """
    raise NotImplementedError(
        '%s is not a source op handler; cannot regularize %s.' %
        (type(self).__name__, op_handler_util.describe_op(op_slice.op)))

  def is_source(self, op: tf.Operation) -> bool:
    """Whether this particular op is a source; defaults to `is_source_op`."""
    del op  # Unused by handlers that decide by type.
    return self.is_source_op

  def get_num_channels(self, op: tf.Operation) -> Optional[int]:
    """Returns the size of the op's channel space (its first output's)."""
    if not op.outputs:
      return None
    return op_handler_util.get_num_channels(op.outputs[0])

  def get_output_channel_range(
      self, op: tf.Operation, output_index: int) -> Optional[Tuple[int, int]]:
    """Maps output `output_index` of `op` into the op's channel space.

    Args:
      op: the op.
      output_index: index into `op.outputs`.

    Returns:
      (start, size) of the output's channels in the op's channel space, or
      None when the output is not a channel tensor of the op.
    """
    size = op_handler_util.get_num_channels(op.outputs[output_index])
    if size is None:
      return None
    if output_index == 0:
      return (0, size)
    return (0, size) if size == self.get_num_channels(op) else None
