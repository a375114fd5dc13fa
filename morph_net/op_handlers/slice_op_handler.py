"""SliceOpHandler: Slice / StridedSlice that keep a contiguous channel range."""

from morph_net.framework import graph_util
from morph_net.framework import op_handler_util
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['SliceOpHandler']


def _channel_slice_begin(op):
  """Returns the first input channel the op keeps, or None if not a slice."""
  value, output = op.inputs[0], op.outputs[0]
  rank = value.shape.rank
  in_channels = graph_util.get_num_channels(value)
  out_channels = graph_util.get_num_channels(output)
  if (rank is None or output.shape.rank != rank or in_channels is None or
      out_channels is None):
    return None
  begin = graph_util.get_constant_value(op.inputs[1])
  if begin is None:
    return None
  begin = begin.reshape(-1)
  if op.type == 'Slice':
    start = int(begin[-1]) if len(begin) == rank else None
  else:
    strides = graph_util.get_constant_value(op.inputs[3])
    if strides is None or any(int(s) != 1 for s in strides.reshape(-1)):
      return None
    if op.get_attr('new_axis_mask') or op.get_attr('shrink_axis_mask'):
      return None
    last = len(begin) - 1
    ellipsis = op.get_attr('ellipsis_mask')
    if len(begin) != rank and not (ellipsis and not ellipsis & (1 << last)):
      return None
    start = 0 if op.get_attr('begin_mask') & (1 << last) else int(begin[-1])
  if start is None:
    return None
  if start < 0:
    start += in_channels
  if start < 0 or start + out_channels > in_channels:
    return None
  return start


class SliceOpHandler(leaf_op_handler.LeafOpHandler):
  """Groups a slice's channels with the input channels it keeps.

  Slices that also change other axes (Keras Cropping) keep grouping. A slice
  the handler cannot read statically (dynamic begin, strides other than 1,
  new or shrunk axes) starts a new channel space, like a leaf. Project
  extension; the original registered StridedSlice as a leaf.
  """

  @property
  def is_passthrough(self):
    return True

  def assign_grouping(self, op, op_reg_manager):
    """Groups the kept input channels with the op, then the op's outputs.

    Args:
      op: a Slice or StridedSlice tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    start = _channel_slice_begin(op)
    producer = op.inputs[0].op
    channel_range = (op_reg_manager.channel_range(op.inputs[0])
                     if start is not None else None)
    size = op_handler_util.get_op_size(op)
    if channel_range is not None and size:
      # Ungrouped, the producer has not run: the grouping gives its
      # channels a group, and it is queued so its handler still groups
      # its inputs.
      ungrouped = op_handler_util.get_ops_without_groups([producer],
                                                         op_reg_manager)
      handler_steps.group_channel_ranges(
          op, 0, producer, channel_range[1] + start, size, op_reg_manager)
      op_reg_manager.process_ops(ungrouped)
    leaf_op_handler.group_with_outputs(op, op_reg_manager)
