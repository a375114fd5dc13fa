"""DepthToSpaceOpHandler: each output channel gathers B * B input channels.

DepthToSpace with block size B maps an NHWC input of C_in = B * B * C_out
channels to C_out channels: output channel c at block position k comes from
input channel k * C_out + c. So output channel c is grouped with input
channels c, C_out + c, 2 * C_out + c, ... The op and each block of C_out
input channels are cut into the same slices, and slice j of the op is grouped
with slice j of every block. (The original grouped contiguous runs of B * B
input channels instead, which matches TensorFlow's layout only when C_out is
1, and cut everything into single channels.)
"""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['DepthToSpaceOpHandler']


class DepthToSpaceOpHandler(leaf_op_handler.LeafOpHandler):
  """Groups DepthToSpace output channels with the input channels they gather.

  The op waits until its input has a group. An NCHW DepthToSpace, or one
  whose input is outside the analysis, starts a new channel space (a leaf).
  """

  def assign_grouping(self, op, op_reg_manager):
    """Groups the op's channels with its input's, or queues the input.

    Args:
      op: a DepthToSpace tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    util = op_handler_util
    input_ops = util.get_input_ops(op, op_reg_manager)
    if not input_ops or op.get_attr('data_format') not in (b'NHWC', 'NHWC'):
      leaf_op_handler.group_with_outputs(op, op_reg_manager)
      return
    neighbours = handler_steps.find_neighbours(op, op_reg_manager, input_ops)
    output_ops_to_group = neighbours.output_ops_to_group
    output_ops_to_defer = neighbours.output_ops_to_process
    handler_steps.append_missing(output_ops_to_defer,
                                 neighbours.output_ops_without_group)
    if neighbours.input_ops_without_group:
      op_reg_manager.process_ops(neighbours.input_ops_without_group)
      return

    output_size = util.get_op_size(op)
    input_slices = op_reg_manager.get_op_slices(input_ops[0])
    op_slices = op_reg_manager.get_op_slices(op)
    pattern = _common_pattern(input_slices, op_slices, output_size)
    input_pattern = pattern * (util.get_op_size(input_ops[0]) // output_size)
    if [s.slice.size for s in input_slices] != input_pattern:
      op_reg_manager.slice_op(input_ops[0], input_pattern)
    if [s.slice.size for s in op_slices] != pattern:
      op_reg_manager.slice_op(op, pattern)
    util.reslice_ops(output_ops_to_group, pattern, op_reg_manager)
    op_slices = op_reg_manager.get_op_slices(op)
    input_op_slices = util.get_op_slices(input_ops, op_reg_manager)
    for index, op_slice in enumerate(op_slices):
      for input_slices in input_op_slices:
        op_reg_manager.group_op_slices(
            input_slices[index::len(op_slices)] + [op_slice])
    if output_ops_to_defer:
      op_reg_manager.process_ops(output_ops_to_defer)


def _common_pattern(input_slices, op_slices, output_size):
  """Returns slice sizes over C_out refining the op and every input block.

  Input channels [k * C_out, (k + 1) * C_out) form block k; the op and each
  block must be cut the same way for slice j of every block to be grouped
  with slice j of the op.

  Args:
    input_slices: the OpSlices of the input op.
    op_slices: the OpSlices of the DepthToSpace op.
    output_size: C_out.

  Returns:
    List of int summing to C_out.
  """
  cuts = {output_size}
  for op_slice in list(input_slices) + list(op_slices):
    end = op_slice.slice.start_index + op_slice.slice.size
    cuts.add(end % output_size or output_size)
  ends = sorted(cuts)
  return [end - start for start, end in zip([0] + ends[:-1], ends)]
