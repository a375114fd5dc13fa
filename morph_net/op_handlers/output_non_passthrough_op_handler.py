"""OutputNonPassthroughOpHandler: the output is a new channel space.

Convolutions and matmuls under Gamma regularizers (their output channels are
grouped with the batch norm that follows), Transpose, ExpandDims. The op takes
its group from its outputs and does not pass it to its inputs.
"""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['OutputNonPassthroughOpHandler']


class OutputNonPassthroughOpHandler(leaf_op_handler.LeafOpHandler):
  """Groups an op with its same-width passthrough outputs; queues its inputs."""

  def assign_grouping(self, op, op_reg_manager):
    """Groups `op` with its outputs and queues its ungrouped neighbours.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    neighbours = handler_steps.find_neighbours(op, op_reg_manager)
    output_ops_to_process = (neighbours.output_ops_to_process +
                             neighbours.output_ops_without_group)
    output_op_slices, aligned_op_slice_sizes = (
        handler_steps.align_with_outputs(op, neighbours.output_ops_to_group,
                                         op_reg_manager))
    op_handler_util.group_op_with_inputs_and_outputs(
        op, [], output_op_slices, aligned_op_slice_sizes, op_reg_manager)
    op_reg_manager.process_ops(output_ops_to_process +
                               neighbours.input_ops_without_group)
