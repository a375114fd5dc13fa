"""DepthToSpaceOpHandler: output channel c gathers input channels k*C_out + c."""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import leaf_op_handler


class DepthToSpaceOpHandler(leaf_op_handler.LeafOpHandler):
  """Groups each block of C_out input channels with the C_out outputs (NHWC)."""

  @property
  def is_passthrough(self):
    return True

  def assign_grouping(self, op, op_reg_manager):
    if op.get_attr('data_format') not in (b'NHWC', 'NHWC'):
      return
    channel_range = op_reg_manager.channel_range(op.inputs[0])
    out_channels = op_handler_util.get_num_channels(op.outputs[0])
    if channel_range is None or not out_channels:
      return
    in_op, in_start, in_channels = channel_range
    for k in range(in_channels // out_channels):
      op_reg_manager.group_channels(op, 0, in_op, in_start + k * out_channels,
                                    out_channels)
