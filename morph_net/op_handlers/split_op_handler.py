"""SplitOpHandler: Split/SplitV outputs are slices of the input channels."""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler


class SplitOpHandler(grouping_op_handler.GroupingOpHandler):
  """The op's channel space is its input's; output k is one slice of it.

  For a split along another axis every output has all the input channels.
  """

  @staticmethod
  def _value_and_axis(op):
    if op.type == 'Split':
      return op.inputs[1], op.inputs[0]
    return op.inputs[0], op.inputs[2]  # SplitV(value, size_splits, axis).

  def _splits_channels(self, op):
    value, axis_tensor = self._value_and_axis(op)
    axis = op_handler_util.get_constant_value(axis_tensor)
    return axis is not None and op_handler_util.is_channel_axis(
        axis, value.shape.rank)

  def get_num_channels(self, op):
    value, _ = self._value_and_axis(op)
    if self._splits_channels(op):
      return op_handler_util.get_num_channels(value)
    return super().get_num_channels(op)

  def get_output_channel_range(self, op, output_index):
    if not self._splits_channels(op):
      size = op_handler_util.get_num_channels(op.outputs[output_index])
      return None if size is None else (0, size)
    sizes = [op_handler_util.get_num_channels(t) for t in op.outputs]
    if any(s is None for s in sizes):
      return None
    return (sum(sizes[:output_index]), sizes[output_index])

  def assign_grouping(self, op, op_reg_manager):
    value, _ = self._value_and_axis(op)
    channel_range = op_reg_manager.channel_range(value)
    channels = self.get_num_channels(op)
    if channel_range is None or channels != channel_range[2]:
      return
    op_reg_manager.group_channels(op, 0, channel_range[0], channel_range[1],
                                  channels)
