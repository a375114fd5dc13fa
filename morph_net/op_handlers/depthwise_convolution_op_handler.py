"""DepthwiseConvolutionOpHandler: output channels follow input channels.

With depth multiplier m, output channel i * m + k comes from input channel i,
so each input channel is grouped with its m output channels.
"""

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps

__all__ = ['DepthwiseConvolutionOpHandler']


class DepthwiseConvolutionOpHandler(grouping_op_handler.GroupingOpHandler):
  """Groups a DepthwiseConv2dNative's channels with its input channels.

  With depth multiplier 1 (or an input outside the analysis) it is a grouping
  op. Otherwise the input is cut into single channels, the op and its outputs
  too, and input channel i is grouped with output channels i * m ... i * m +
  m - 1.
  """

  def assign_grouping(self, op, op_reg_manager):
    """Groups the depthwise conv with its input and outputs.

    Args:
      op: a DepthwiseConv2dNative tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.

    Raises:
      UnsupportedGraphError: if `op` is not a DepthwiseConv2dNative.
    """
    if op.type != 'DepthwiseConv2dNative':
      raise errors.UnsupportedGraphError(
          'DepthwiseConvolutionOpHandler handles DepthwiseConv2dNative ops, '
          'not op %s. Register it only for that type.' %
          graph_util.describe_op(op))
    util = op_handler_util
    output_size = util.get_op_size(op)
    input_size = graph_util.get_num_channels(op.inputs[0]) or 0
    depth_multiplier = graph_util.get_num_channels(op.inputs[1])
    input_ops = util.get_input_ops(op, op_reg_manager)
    if depth_multiplier == 1 or not input_size or not input_ops:
      # Without an analysed input the op's channels are a new space.
      super().assign_grouping(op, op_reg_manager)
      return

    neighbours = handler_steps.find_neighbours(op, op_reg_manager, input_ops)
    input_ops_to_group = input_ops[:1]  # Input 1 (the filter) is left out.
    output_ops_to_group = neighbours.output_ops_to_group
    output_ops_to_process = neighbours.output_ops_to_process
    handler_steps.append_missing(output_ops_to_process,
                                 neighbours.output_ops_without_group)

    aligned_op_slice_sizes = [1] * output_size
    util.reslice_ops(input_ops_to_group, [1] * input_size, op_reg_manager)
    util.reslice_ops([op] + output_ops_to_group, aligned_op_slice_sizes,
                     op_reg_manager)
    input_op_slices = [
        [op_slice for op_slice in slices for _ in range(depth_multiplier)]
        for slices in util.get_op_slices(input_ops_to_group, op_reg_manager)]
    output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
    util.group_aligned_input_output_slices(
        op, neighbours.input_ops_without_group, output_ops_to_process,
        input_op_slices, output_op_slices, aligned_op_slice_sizes,
        op_reg_manager)
