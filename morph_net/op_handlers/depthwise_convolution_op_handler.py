"""DepthwiseConvolutionOpHandler: output channels follow input channels.

With depth multiplier m, output channel i*m + k comes from input channel i,
so each input channel is grouped with its m output channels.
"""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler


class DepthwiseConvolutionOpHandler(grouping_op_handler.GroupingOpHandler):
  """Groups a depthwise conv's output with its input, per channel."""

  def __init__(self):
    super().__init__(input_indices=(0,))

  def assign_grouping(self, op, op_reg_manager):
    channel_range = op_reg_manager.channel_range(op.inputs[0])
    out_channels = op_handler_util.get_num_channels(op.outputs[0])
    if channel_range is None or not out_channels:
      return
    in_op, in_start, in_channels = channel_range
    multiplier = out_channels // in_channels
    if multiplier * in_channels != out_channels:
      return
    if multiplier == 1:
      op_reg_manager.group_channels(op, 0, in_op, in_start, in_channels)
      return
    for i in range(in_channels):
      for k in range(multiplier):
        op_reg_manager.group_channels(op, i * multiplier + k, in_op,
                                      in_start + i, 1)
