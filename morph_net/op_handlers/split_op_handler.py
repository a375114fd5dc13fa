"""SplitOpHandler: Split / SplitV outputs are parts of the input's channels."""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler

__all__ = ['SplitOpHandler']


def _value_index(op):
  """Index of the split value: Split(axis, value), SplitV(value, sizes, axis)."""
  return 1 if op.type == 'Split' else 0


class SplitOpHandler(grouping_op_handler.GroupingOpHandler):
  """The op's channel space is its input's; output k is one range of it.

  The op groups with its input like an element-wise op; the consumers of
  output k group with range k (through `get_output_channel_range`). A split
  along another axis gives every output all the channels. Project extension;
  the original's default grouping could not group a split's consumers.
  """

  def assign_grouping(self, op, op_reg_manager):
    """Groups the split with its input; queues the consumers of its outputs.

    Args:
      op: a Split or SplitV tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    self._group_with_neighbours(op, op_reg_manager, [_value_index(op)])

  def get_output_channel_range(self, op, output_index):
    """Returns (start, size) of output `output_index` in the input channels."""
    sizes = [op_handler_util.get_num_channels(t) for t in op.outputs]
    if None in sizes:
      return None
    if sum(sizes) != op_handler_util.get_op_size(op):  # Not a channel split.
      return super().get_output_channel_range(op, output_index)
    return (sum(sizes[:output_index]), sizes[output_index])
