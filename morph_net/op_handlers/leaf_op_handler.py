"""LeafOpHandler: ops whose output channels are unrelated to their inputs.

Reshape, Shape, SpaceToDepth, random ops and the like: the output is a new
channel space. It is grouped with the outputs that pass it through (so they
share its fate), never with the inputs.
"""

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util
from morph_net.op_handlers import handler_steps

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
  neighbours = handler_steps.find_neighbours(op, op_reg_manager,
                                             with_inputs=False)
  output_ops_to_process = neighbours.output_ops_to_process
  handler_steps.append_missing(output_ops_to_process,
                               neighbours.output_ops_without_group)
  output_op_slices, aligned_op_slice_sizes = handler_steps.align_with_outputs(
      op, neighbours.output_ops_to_group, op_reg_manager)
  op_handler_util.group_aligned_input_output_slices(
      op, [], output_ops_to_process, [], output_op_slices,
      aligned_op_slice_sizes, op_reg_manager)
