"""Steps the built-in op handlers share, built on the original's API.

The original's handlers each spelled these out; here they are written once.
Every step makes the same manager calls, in the same order, as the inline
code of the original's handlers, so a handler built from them behaves (and
is tested) like the original's.
"""

import bisect
import collections
import itertools

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.framework import op_handler_util

__all__ = [
    'Neighbours', 'align_with_outputs', 'append_missing', 'find_neighbours',
    'group_channel_ranges', 'make_sources'
]

Neighbours = collections.namedtuple('Neighbours', [
    'input_ops', 'input_ops_without_group', 'output_ops_without_group',
    'output_ops_to_group', 'output_ops_to_process'
])
Neighbours.__doc__ = """The neighbours of an op, sorted for grouping.

Attributes:
  input_ops: the input ops taking part in grouping.
  input_ops_without_group: those with an ungrouped slice.
  output_ops_without_group: output ops with an ungrouped slice.
  output_ops_to_group: passthrough outputs as wide as the op.
  output_ops_to_process: passthrough outputs of another width.
"""


def find_neighbours(op, op_reg_manager, input_ops=None, with_inputs=True):
  """Finds an op's input and output ops and which of them can be grouped.

  Args:
    op: the tf.Operation being grouped.
    op_reg_manager: the OpRegularizerManager.
    input_ops: the input ops, if the handler chose them; by default
      `op_handler_util.get_input_ops(op, op_reg_manager)`.
    with_inputs: False for handlers that never look at inputs (leaves).

  Returns:
    A Neighbours.
  """
  util = op_handler_util
  input_ops_without_group = []
  if with_inputs:
    if input_ops is None:
      input_ops = util.get_input_ops(op, op_reg_manager)
    input_ops_without_group = util.get_ops_without_groups(input_ops,
                                                          op_reg_manager)
  output_ops = util.get_output_ops(op, op_reg_manager)
  output_ops_without_group = util.get_ops_without_groups(output_ops,
                                                         op_reg_manager)
  output_ops = util.remove_non_passthrough_ops(output_ops, op_reg_manager)
  output_ops_to_group, output_ops_to_process = util.separate_same_size_ops(
      op, output_ops)
  return Neighbours(input_ops or [], input_ops_without_group,
                    output_ops_without_group, output_ops_to_group,
                    output_ops_to_process)


def append_missing(ops, more_ops):
  """Appends to `ops` the ops of `more_ops` it does not hold yet."""
  for op in more_ops:
    if op not in ops:
      ops.append(op)


def make_sources(op, op_reg_manager):
  """Gives every ungrouped slice of a source op a group with it as source."""
  for op_slice in op_reg_manager.get_op_slices(op):
    if op_reg_manager.get_op_group(op_slice) is None:
      op_reg_manager.create_op_group_for_op_slice(op_slice)


def align_with_outputs(op, output_ops_to_group, op_reg_manager):
  """Reslices `op` and its same-width outputs to common slice sizes.

  Args:
    op: a tf.Operation.
    output_ops_to_group: its passthrough outputs of the same width.
    op_reg_manager: the OpRegularizerManager.

  Returns:
    (slices per output op after reslicing, the aligned slice sizes).
  """
  util = op_handler_util
  op_slices = op_reg_manager.get_op_slices(op)
  output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
  aligned_op_slice_sizes = util.get_aligned_op_slice_sizes(
      op_slices, [], output_op_slices)
  util.reslice_ops([op] + output_ops_to_group, aligned_op_slice_sizes,
                   op_reg_manager)
  return (util.get_op_slices(output_ops_to_group, op_reg_manager),
          aligned_op_slice_sizes)


def group_channel_ranges(op_a, start_a, op_b, start_b, size, op_reg_manager):
  """Groups channels [start_a, +size) of `op_a` with [start_b, +size) of `op_b`.

  Both ops are resliced so that the two ranges consist of slices of the same
  sizes, which are then grouped pairwise. Used for a slice of the channels
  (Slice, StridedSlice), a consumer of one output of a Split, and a concat of
  such partial outputs. Project extension.

  Args:
    op_a: a tf.Operation.
    start_a: first channel of the range in `op_a`.
    op_b: a tf.Operation.
    start_b: first channel of the range in `op_b`.
    size: number of channels.
    op_reg_manager: the OpRegularizerManager.

  Raises:
    UnsupportedGraphError: if a range lies outside its op's channels.
  """
  ranges = ((op_a, start_a), (op_b, start_b))
  for op, start in ranges:
    channels = op_handler_util.get_op_size(op)
    if start < 0 or start + size > channels:
      raise errors.UnsupportedGraphError(
          'Cannot group channels [%d, %d) of op %s, which has %d channels. '
          'Its op handler declared an impossible grouping; register a '
          'handler that matches op type %s.' %
          (start, start + size, graph_util.describe_op(op), channels, op.type))
  # Each pass that reslices adds a cut inside the ranges, so size + 1 passes
  # always end with both ranges cut at the same (relative) channels.
  for _ in range(size + 1):
    cuts = {0, size}
    for op, start in ranges:
      cuts.update(end - start for end in _op_boundaries(op, op_reg_manager)
                  if start < end < start + size)
    resliced = False
    for op, start in ranges:
      ends = _op_boundaries(op, op_reg_manager)
      refined = sorted(set(ends).union(start + cut for cut in cuts) - {0})
      if refined != ends:
        op_reg_manager.slice_op(
            op, [end - begin for begin, end in zip([0] + refined, refined)])
        resliced = True
    if not resliced:
      break
  slices_a = _slices_in_range(op_reg_manager.get_op_slices(op_a), start_a, size)
  slices_b = _slices_in_range(op_reg_manager.get_op_slices(op_b), start_b, size)
  get_group = op_reg_manager.get_op_group
  for slice_a, slice_b in zip(slices_a, slices_b):
    group = get_group(slice_a)
    if group is None or group is not get_group(slice_b):
      op_reg_manager.group_op_slices([slice_a, slice_b])


def _op_boundaries(op, op_reg_manager):
  """Returns the end channel of each slice of `op`."""
  return list(itertools.accumulate(
      op_slice.slice.size for op_slice in op_reg_manager.get_op_slices(op)))


def _slices_in_range(op_slices, start, size):
  """Returns the OpSlices that lie in channels [start, start + size)."""
  starts = [s.slice.start_index for s in op_slices]
  first = bisect.bisect_left(starts, start)
  last = bisect.bisect_left(starts, start + size)
  return op_slices[first:last]
