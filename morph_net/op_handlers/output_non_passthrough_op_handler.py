"""OutputNonPassthroughOpHandler: the output is a new channel space.

Convolutions and matmuls under Gamma regularizers (their output channels are
grouped with the batch norm that follows), Transpose, ExpandDims. The op takes
its group from its outputs and does not pass it to its inputs.
"""

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util

__all__ = ['OutputNonPassthroughOpHandler']


class OutputNonPassthroughOpHandler(op_handler.OpHandler):
  """Groups an op with its same-width passthrough outputs; queues its inputs."""

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return False

  def assign_grouping(self, op, op_reg_manager):
    """Groups `op` with its outputs and queues its ungrouped neighbours.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    util = op_handler_util
    input_ops = util.get_input_ops(op, op_reg_manager)
    input_ops_without_group = util.get_ops_without_groups(input_ops,
                                                          op_reg_manager)
    output_ops = util.get_output_ops(op, op_reg_manager)
    output_ops_without_group = util.get_ops_without_groups(output_ops,
                                                           op_reg_manager)
    output_ops = util.remove_non_passthrough_ops(output_ops, op_reg_manager)
    output_ops_to_group, output_ops_to_process = util.separate_same_size_ops(
        op, output_ops)
    output_ops_to_process.extend(output_ops_without_group)

    op_slices = op_reg_manager.get_op_slices(op)
    output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
    aligned_op_slice_sizes = util.get_aligned_op_slice_sizes(
        op_slices, [], output_op_slices)
    util.reslice_ops([op] + output_ops_to_group, aligned_op_slice_sizes,
                     op_reg_manager)
    output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
    util.group_op_with_inputs_and_outputs(op, [], output_op_slices,
                                          aligned_op_slice_sizes,
                                          op_reg_manager)
    op_reg_manager.process_ops(output_ops_to_process + input_ops_without_group)

  def create_regularizer(self, _):
    raise NotImplementedError('Not a source op.')
