"""SliceOpHandler: Slice/StridedSlice that keep a contiguous channel range."""

from morph_net.framework import op_handler_util
from morph_net.op_handlers import leaf_op_handler


def _channel_slice_begin(op):
  """Returns the first input channel the op keeps, or None if not a slice."""
  value, output = op.inputs[0], op.outputs[0]
  rank = value.shape.rank
  in_channels = op_handler_util.get_num_channels(value)
  out_channels = op_handler_util.get_num_channels(output)
  if (rank is None or output.shape.rank != rank or in_channels is None or
      out_channels is None):
    return None
  for i in range(rank - 1):  # Only the channel axis may change size.
    if value.shape[i] is not None and value.shape[i] != output.shape[i]:
      return None
  begin = op_handler_util.get_constant_value(op.inputs[1])
  if begin is None:
    return None
  begin = begin.reshape(-1)
  if op.type == 'Slice':
    start = int(begin[-1]) if len(begin) == rank else None
  else:
    strides = op_handler_util.get_constant_value(op.inputs[3])
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
  """Groups output channels with the input channels the slice keeps.

  Slices that also change other axes keep grouping; anything the handler
  cannot read statically (dynamic begin, strides != 1, new axes) is a leaf.
  """

  @property
  def is_passthrough(self):
    return True

  def assign_grouping(self, op, op_reg_manager):
    start = _channel_slice_begin(op)
    if start is None:
      return
    channel_range = op_reg_manager.channel_range(op.inputs[0])
    size = op_handler_util.get_num_channels(op.outputs[0])
    if channel_range is None:
      return
    op_reg_manager.group_channels(op, 0, channel_range[0],
                                  channel_range[1] + start, size)
