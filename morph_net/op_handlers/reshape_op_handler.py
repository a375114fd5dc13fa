"""ReshapeOpHandler: reshapes that keep or repeat the channel axis.

A Transpose whose permutation leaves the last axis last, and a ReverseV2
along other axes (the backward direction of Bidirectional), keep every
channel, and group like an element-wise op with their first input (Keras
3's Tensordot transposes its input, with the identity permutation when the
batch is unknown); other permutations and reversals start a new channel
space.

Reshape, ExpandDims and Squeeze move no element: in row-major order the
flat index of an element is position x C + channel. Comparing the static
last dimensions of the input (C) and the output (D) tells how channels map:

* D == C: output channel c is input channel c (ExpandDims / Squeeze around
  1-D convs and pooling, the Reshapes of UpSampling nearest and of a Dense on
  tokens): the op groups like an element-wise op with its first input.
* D == P x C (Flatten, and any Reshape merging positions into channels):
  output channel p x C + c is input channel c at the p-th merged position,
  so the output is the input's channel space repeated P times. The op is cut
  into P slices of C channels (and finer, as the input is sliced), slice p
  grouped with the input's channels; a consumer then reads P x (alive input
  channels), which is what a Dense after a Flatten costs in the rebuilt
  network.
* anything else (channels split into heads, unknown shapes, an input outside
  the analysis): a new channel space, handled by the fallback handler (a
  leaf for Reshape and Squeeze; output non-passthrough for ExpandDims, as in
  the original).

Project extension: the original registered Reshape as a leaf and ExpandDims
as output non-passthrough.
"""

import itertools

from morph_net.framework import graph_util
from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['ReshapeOpHandler', 'channel_repeats']


def channel_repeats(op):
  """How many times `op`'s output repeats its input's channels.

  Args:
    op: a Reshape, ExpandDims, Squeeze, Transpose or ReverseV2
      tf.Operation.

  Returns:
    1 when the output channels are the input channels, P > 1 when the output
    is P copies of them (merged positions), None otherwise (or unknown).
  """
  if not op.inputs or not op.outputs:
    return None
  if op.type == 'Transpose':
    return 1 if _keeps_last_axis(op) else None
  if op.type == 'ReverseV2':
    axes = graph_util.get_constant_value(op.inputs[1])
    rank = op.inputs[0].shape.rank
    if axes is None or any(graph_util.is_channel_axis(int(axis), rank)
                           for axis in axes.reshape(-1)):
      return None
    return 1
  value, output = op.inputs[0], op.outputs[0]
  in_channels = graph_util.get_num_channels(value)
  out_channels = graph_util.get_num_channels(output)
  if not in_channels or not out_channels or out_channels % in_channels:
    return None
  repeats = out_channels // in_channels
  if repeats > 1:
    in_positions = _positions(value)
    out_positions = _positions(output)
    # Merging positions: each example's positions shrink by the factor.
    if (in_positions is None or out_positions is None or
        in_positions != out_positions * repeats):
      return None
  return repeats


def _keeps_last_axis(op):
  """Whether a Transpose's constant permutation ends with the last axis."""
  perm = graph_util.get_constant_value(op.inputs[1])
  rank = op.inputs[0].shape.rank
  return (perm is not None and rank is not None and perm.size == rank and
          int(perm.reshape(-1)[-1]) == rank - 1)


def _positions(tensor):
  """Static product of the dims between batch and channels, or None."""
  dims = tensor.shape.as_list()[1:-1] if tensor.shape.rank else None
  if dims is None or any(d is None for d in dims):
    return None
  size = 1
  for dim in dims:
    size *= dim
  return size


class ReshapeOpHandler(leaf_op_handler.LeafOpHandler):
  """Groups a reshape's channels with the input channels they repeat.

  Whether neighbours may group with the op (`is_passthrough`) is the
  fallback's answer, as for the op types before this handler: the op groups
  itself with its input when it runs, so inputs need not pull it in.

  Args:
    fallback_handler: handler for reshapes that start a new channel space
      (default: a leaf).
  """

  def __init__(self, fallback_handler=None):
    self._fallback = fallback_handler or leaf_op_handler.LeafOpHandler()
    self._grouping = grouping_op_handler.GroupingOpHandler(
        grouping_indices=[0])

  @property
  def is_passthrough(self):
    return self._fallback.is_passthrough

  def assign_grouping(self, op, op_reg_manager):
    """Groups `op` with its input's channels, or hands it to the fallback.

    Args:
      op: a Reshape, ExpandDims or Squeeze tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    repeats = channel_repeats(op)
    channel_range = (op_reg_manager.channel_range(op.inputs[0])
                     if repeats else None)
    if channel_range is None:
      self._fallback.assign_grouping(op, op_reg_manager)
    elif repeats == 1:
      self._grouping.assign_grouping(op, op_reg_manager)
    else:
      _group_repeats(op, repeats, channel_range, op_reg_manager)
      leaf_op_handler.group_with_outputs(op, op_reg_manager)


def _group_repeats(op, repeats, channel_range, op_reg_manager):
  """Groups each of `repeats` channel blocks of `op` with the input range.

  The input's producer is first cut at the range's ends; then `op` is cut
  into the same slice sizes, repeated, in one `slice_op` call, and the
  pieces are grouped with one `group_op_slices` call each: linear in the
  number of pieces, however large P is. If `op` already has slices that
  do not refine that pattern, each block is grouped on its own.
  """
  producer, start, size = channel_range
  # Ungrouped, the producer has not run: grouping its channels below gives
  # them a group, and it is queued so its handler still groups its inputs.
  ungrouped = op_handler_util.get_ops_without_groups([producer],
                                                     op_reg_manager)
  _cut_at(producer, (start, start + size), op_reg_manager)
  input_slices = [s for s in op_reg_manager.get_op_slices(producer)
                  if start <= s.slice.start_index < start + size]
  sizes = [s.slice.size for s in input_slices]
  current = [s.slice.size for s in op_reg_manager.get_op_slices(op)]
  pattern = sizes * repeats
  if current == [size * repeats] or current == pattern:
    op_reg_manager.slice_op(op, pattern)
    op_slices = op_reg_manager.get_op_slices(op)
    get_group = op_reg_manager.get_op_group
    for index, op_slice in enumerate(op_slices):
      input_slice = input_slices[index % len(input_slices)]
      group = get_group(op_slice)
      if group is None or group is not get_group(input_slice):
        op_reg_manager.group_op_slices([op_slice, input_slice])
  else:
    for block in range(repeats):
      handler_steps.group_channel_ranges(op, block * size, producer, start,
                                         size, op_reg_manager)
  op_reg_manager.process_ops(ungrouped)


def _cut_at(op, channels, op_reg_manager):
  """Reslices `op` so that a slice boundary falls at each of `channels`."""
  ends = list(itertools.accumulate(
      s.slice.size for s in op_reg_manager.get_op_slices(op)))
  refined = sorted(set(ends).union(channels) - {0})
  if refined != ends:
    op_reg_manager.slice_op(
        op, [end - begin for begin, end in zip([0] + refined, refined)])
