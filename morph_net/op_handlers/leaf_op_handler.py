"""LeafOpHandler: ops whose output channels are unrelated to their inputs.

Reshape, Shape, SpaceToDepth, random ops and the like: the output is a new
channel space. It is grouped with the outputs that pass it through (so they
share its fate), never with the inputs.
"""

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util

__all__ = ['LeafOpHandler', 'group_with_outputs']


class LeafOpHandler(op_handler.OpHandler):
  """Groups an op with its passthrough outputs of the same width only."""

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return False

  def assign_grouping(self, op, op_reg_manager):
    """Groups `op` with its same-width passthrough outputs.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    group_with_outputs(op, op_reg_manager)

  def create_regularizer(self, _):
    raise NotImplementedError('Not a source op.')


def group_with_outputs(op, op_reg_manager):
  """Groups `op` with its passthrough outputs of the same width.

  The other outputs, and outputs without a group, are queued for processing.

  Args:
    op: tf.Operation to group.
    op_reg_manager: OpRegularizerManager tracking slices and groups.
  """
  util = op_handler_util
  output_ops = util.get_output_ops(op, op_reg_manager)
  output_ops_without_group = util.get_ops_without_groups(output_ops,
                                                         op_reg_manager)
  output_ops = util.remove_non_passthrough_ops(output_ops, op_reg_manager)
  output_ops_to_group, output_ops_to_process = util.separate_same_size_ops(
      op, output_ops)
  for output_op in output_ops_without_group:
    if output_op not in output_ops_to_process:
      output_ops_to_process.append(output_op)

  op_slices = op_reg_manager.get_op_slices(op)
  output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
  aligned_op_slice_sizes = util.get_aligned_op_slice_sizes(
      op_slices, [], output_op_slices)
  util.reslice_ops([op] + output_ops_to_group, aligned_op_slice_sizes,
                   op_reg_manager)
  output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
  util.group_aligned_input_output_slices(
      op, [], output_ops_to_process, [], output_op_slices,
      aligned_op_slice_sizes, op_reg_manager)
