"""ConcatOpHandler: a channel concat's output is its inputs' channels, in order."""

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['ConcatOpHandler']


class ConcatOpHandler(op_handler.OpHandler):
  """Slices a channel concat so that each input's channels form slices.

  The concat and its same-width outputs are sliced at the input boundaries
  (and the inputs at the outputs' boundaries), and the aligned slices are
  grouped. A concat along another axis groups like an element-wise op; one
  along an unknown axis starts a new channel space.

  Project extension: inputs that are not whole ops of the analysis (one
  output of a split, a constant, an op beyond the input boundary) are grouped
  range by range instead, where the original failed to align sizes.
  """

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return True

  def assign_grouping(self, op, op_reg_manager):
    """Groups the concat's slices with its inputs and outputs.

    Args:
      op: tf.Operation to group (ConcatV2, or the legacy Concat).
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    values, axis = _values_and_axis(op)
    rank = values[0].shape.rank if values else None
    if axis is None:
      leaf_op_handler.group_with_outputs(op, op_reg_manager)
      return
    if not op_handler_util.is_channel_axis(axis, rank):
      grouping_op_handler.GroupingOpHandler().assign_grouping(
          op, op_reg_manager)
      return
    if not all(_is_whole_input(t, op_reg_manager) for t in values):
      _group_input_ranges(op, values, op_reg_manager)
      return

    util = op_handler_util
    neighbours = handler_steps.find_neighbours(op, op_reg_manager)
    input_ops = neighbours.input_ops
    output_ops_to_group = neighbours.output_ops_to_group
    output_ops_to_process = (neighbours.output_ops_to_process +
                             neighbours.output_ops_without_group)
    concat_op_slices = op_reg_manager.get_op_slices(op)
    input_op_slices, output_op_slices = self._get_input_output_op_slices(
        input_ops, output_ops_to_group, op_reg_manager)
    aligned_op_slice_sizes = util.get_aligned_op_slice_sizes(
        concat_op_slices, input_op_slices, output_op_slices)
    util.reslice_concat_ops(input_ops, aligned_op_slice_sizes, op_reg_manager)
    util.reslice_ops(output_ops_to_group + [op], aligned_op_slice_sizes,
                     op_reg_manager)
    input_op_slices, output_op_slices = self._get_input_output_op_slices(
        input_ops, output_ops_to_group, op_reg_manager)
    util.group_aligned_input_output_slices(
        op, neighbours.input_ops_without_group, output_ops_to_process,
        input_op_slices, output_op_slices, aligned_op_slice_sizes,
        op_reg_manager)

  def create_regularizer(self, _):
    raise NotImplementedError('Not a source op.')

  def _get_input_output_op_slices(self, input_ops, output_ops, op_reg_manager):
    """Returns ([concatenated input slices], [slices per passthrough output])."""
    input_op_slices = op_handler_util.get_concat_input_op_slices(
        input_ops, op_reg_manager)
    output_op_slices = op_handler_util.get_op_slices(
        [o for o in output_ops if op_reg_manager.is_passthrough(o)],
        op_reg_manager)
    return input_op_slices, output_op_slices


def _get_concat_op_axis(op):
  """Returns the concat axis of a ConcatV2 (or legacy Concat), or None."""
  axis = op_handler_util.get_constant_value(
      op.inputs[0] if op.type == 'Concat' else op.inputs[-1])
  return None if axis is None else int(axis)


def _values_and_axis(op):
  """Returns (the concatenated tensors, the constant axis or None)."""
  values = list(op.inputs[1:] if op.type == 'Concat' else op.inputs[:-1])
  return values, _get_concat_op_axis(op)


def _is_whole_input(tensor, op_reg_manager):
  """Whether `tensor` is all the channels of an analysed, non-constant op."""
  producer = tensor.op
  if producer.type == 'Const' or producer not in op_reg_manager.ops:
    return False
  if len(producer.outputs) < 2:
    return True
  return (op_handler_util.get_num_channels(tensor) ==
          op_handler_util.get_op_size(producer))


def _group_input_ranges(op, values, op_reg_manager):
  """Groups each input's channel range with its part of the concat."""
  offset, ungrouped = 0, []
  for tensor in values:
    channels = op_handler_util.get_num_channels(tensor) or 0
    channel_range = op_reg_manager.channel_range(tensor)
    if channel_range is not None and channels:
      producer, start, _ = channel_range
      # Ungrouped, the producer has not run: the grouping gives its
      # channels a group, and it is queued so its handler still groups
      # its inputs.
      handler_steps.append_missing(ungrouped, (
          op_handler_util.get_ops_without_groups([producer], op_reg_manager)))
      handler_steps.group_channel_ranges(op, offset, producer, start,
                                         channels, op_reg_manager)
    offset += channels
  op_reg_manager.process_ops(ungrouped)
  leaf_op_handler.group_with_outputs(op, op_reg_manager)
