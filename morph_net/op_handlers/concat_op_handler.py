"""ConcatOpHandler: the output channels are the inputs' channels, in order."""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler


class ConcatOpHandler(grouping_op_handler.GroupingOpHandler):
  """Slices a channel concat's output into one slice per input.

  A concat along another axis (for example the batch) groups the inputs'
  channels with the output's, like an element-wise op.
  """

  @staticmethod
  def _values_and_axis(op):
    if op.type == 'Concat':  # Legacy op: axis first.
      return list(op.inputs[1:]), op.inputs[0]
    return list(op.inputs[:-1]), op.inputs[-1]

  def assign_grouping(self, op, op_reg_manager):
    values, axis_tensor = self._values_and_axis(op)
    axis = op_handler_util.get_constant_value(axis_tensor)
    rank = op.outputs[0].shape.rank
    if axis is None or not op_handler_util.is_channel_axis(axis, rank):
      for tensor in values:
        op_reg_manager.group_tensors(op.outputs[0], tensor)
      return
    offset = 0
    for tensor in values:
      size = op_handler_util.get_num_channels(tensor)
      if size is None:
        return  # Offsets after an unknown input are unknown.
      channel_range = op_reg_manager.channel_range(tensor)
      if channel_range is not None and channel_range[2] == size:
        op_reg_manager.group_channels(op, offset, channel_range[0],
                                      channel_range[1], size)
      offset += size
