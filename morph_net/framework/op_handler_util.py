"""Helpers the op handlers use to group op slices through the manager.

These are the original MorphNet's `op_handler_util` functions, with the same
names, signatures and manager calls, so handlers written for the original run
unchanged. A handler typically:

1. finds its input and output ops (`get_input_ops`, `get_output_ops`) and
   which of them have no group yet (`get_ops_without_groups`);
2. keeps the neighbours it can group with (`remove_non_passthrough_ops`,
   `separate_same_size_ops`);
3. aligns the slices of the op and those neighbours
   (`get_aligned_op_slice_sizes`, `reslice_ops`);
4. groups the aligned slices or queues what is not ready yet
   (`group_aligned_input_output_slices`).

Project extensions: `cached_op_sizes` (the manager memoizes `get_op_size`
during an analysis), and the graph helpers of `graph_util`, re-exported here
because the cost calculator and the Keras bridge import them from this
module. The steps the built-in handlers share are in
`morph_net.op_handlers.handler_steps`.
"""

import contextlib
import re
import threading

from absl import logging

from morph_net.framework.graph_util import describe_op
from morph_net.framework.graph_util import get_constant_value
from morph_net.framework.graph_util import get_num_channels
from morph_net.framework.graph_util import is_channel_axis
from morph_net.framework.graph_util import normalize_axis
from morph_net.framework.graph_util import reads_variable
from morph_net.framework.graph_util import skip_forwarding_ops

__all__ = [
    'OP_TYPES_WITH_MULTIPLE_OUTPUTS', 'WEIGHTS_INDEX_DICT', 'describe_op',
    'cached_op_sizes', 'get_aligned_op_slice_sizes', 'get_aligned_sizes',
    'get_concat_input_op_slices', 'get_constant_value', 'get_input_ops',
    'get_num_channels', 'get_op_size', 'get_op_slice_sizes', 'get_op_slices',
    'get_ops_without_groups', 'get_output_ops', 'get_total_slice_size',
    'group_aligned_input_output_slices', 'group_match',
    'group_op_with_inputs_and_outputs', 'is_channel_axis', 'normalize_axis',
    'reads_variable', 'remove_non_passthrough_ops', 'reslice_concat_ops',
    'reslice_ops', 'separate_same_size_ops', 'skip_forwarding_ops'
]

# Ops whose channel space is the concatenation of their outputs (when they
# split the channel axis).
OP_TYPES_WITH_MULTIPLE_OUTPUTS = ('SplitV', 'Split')

# Op type -> index of the weights input, which is never grouped.
WEIGHTS_INDEX_DICT = {
    'Conv2D': 1,
    'Conv2DBackpropInput': 1,
    'Conv3D': 1,
    'Conv3DBackpropInputV2': 1,
    'DepthwiseConv2dNative': 1,
    'MatMul': 1,
}


def get_input_ops(op, op_reg_manager, whitelist_indices=None):
  """Returns the producers of `op`'s inputs that take part in grouping.

  Constants, the weights input (see WEIGHTS_INDEX_DICT) and ops outside the
  analysis are left out.

  Args:
    op: a tf.Operation.
    op_reg_manager: the OpRegularizerManager (its `ops` bound the analysis).
    whitelist_indices: optional indices of `op.inputs` to consider.

  Returns:
    List of tf.Operation, one per kept input (in input order).
  """
  inputs = op.inputs
  indices = whitelist_indices or range(len(inputs))
  weights_index = WEIGHTS_INDEX_DICT.get(op.type)
  analysed = op_reg_manager.ops
  input_ops = []
  for index, tensor in enumerate(inputs):
    producer = tensor.op
    if (index in indices and index != weights_index and
        producer.type != 'Const' and producer in analysed):
      input_ops.append(producer)
  return input_ops


def get_output_ops(op, op_reg_manager):
  """Returns the distinct consumers of `op`'s outputs inside the analysis."""
  analysed = op_reg_manager.ops
  output_ops, seen = [], set()
  for tensor in op.outputs:
    for consumer in tensor.consumers():
      if consumer not in seen and consumer in analysed:
        seen.add(consumer)
        output_ops.append(consumer)
  return output_ops


def get_ops_without_groups(ops, op_reg_manager):
  """Returns the ops in `ops` with at least one op slice that has no group."""
  ungrouped = []
  for op in ops:
    for op_slice in op_reg_manager.get_op_slices(op):
      if op_reg_manager.get_op_group(op_slice) is None:
        ungrouped.append(op)
        break
  return ungrouped


def remove_non_passthrough_ops(ops, op_reg_manager):
  """Returns the ops in `ops` whose handler is passthrough."""
  return [op for op in ops if op_reg_manager.is_passthrough(op)]


def group_op_with_inputs_and_outputs(op, input_op_slices, output_op_slices,
                                     aligned_op_slice_sizes, op_reg_manager):
  """Groups each slice of `op` with the aligned input and output slices.

  Slice i of `op` is grouped with slice i of every output, then of every
  input, whenever their groups differ. Merging a downstream source with an
  upstream one is logged, since it may over-regularize.

  Args:
    op: a tf.Operation whose slices are aligned with the others.
    input_op_slices: list (per input op) of lists of OpSlice.
    output_op_slices: list (per output op) of lists of OpSlice.
    aligned_op_slice_sizes: list of int, the common slice sizes.
    op_reg_manager: the OpRegularizerManager.

  Returns:
    True if some slice of `op` was grouped with a neighbour of another group.
  """
  op_slices = op_reg_manager.get_op_slices(op)
  get_group = op_reg_manager.get_op_group
  regrouped = False
  for index in range(len(aligned_op_slice_sizes)):
    op_slice = op_slices[index]
    inputs_at_index = [slices[index] for slices in input_op_slices]
    outputs_at_index = [slices[index] for slices in output_op_slices]
    group = get_group(op_slice)
    if group is None:
      op_reg_manager.group_op_slices(
          [op_slice] + inputs_at_index + outputs_at_index)
      continue
    if any(get_group(s) != group for s in outputs_at_index):
      op_reg_manager.group_op_slices([op_slice] + outputs_at_index)
      group = get_group(op_slice)
      regrouped = True
    if any(get_group(s) != group for s in inputs_at_index):
      _warn_if_sources_merge(op, op_slice, inputs_at_index, op_reg_manager)
      op_reg_manager.group_op_slices([op_slice] + inputs_at_index)
      regrouped = True
  return regrouped


def _warn_if_sources_merge(op, op_slice, input_slices, op_reg_manager):
  """Logs when grouping merges sources upstream of `op` into its group."""
  downstream = _get_source_op_slices([op_slice], op_reg_manager)
  if not downstream:
    return
  downstream_set = set(downstream)
  upstream = [s for s in _get_source_op_slices(input_slices, op_reg_manager)
              if s not in downstream_set]
  if upstream:
    logging.warning(
        'Potential over-regularization near %s: its sources %s are grouped '
        'with the upstream sources %s.', op.name,
        [str(s) for s in downstream], [str(s) for s in upstream])


def get_concat_input_op_slices(concat_ops, op_reg_manager):
  """Returns [all slices of all concat inputs, in order] (one list)."""
  concatenated = []
  for concat_op in concat_ops:
    concatenated.extend(op_reg_manager.get_op_slices(concat_op))
  return [concatenated]


def get_op_slices(ops, op_reg_manager):
  """Returns the OpSlice lists of `ops`, leaving out ops without slices."""
  op_slices = [op_reg_manager.get_op_slices(op) for op in ops]
  return [slices for slices in op_slices if slices]


def get_op_slice_sizes(op_slices):
  """Returns the slice sizes of each list of OpSlice in `op_slices`."""
  return [[op_slice.slice.size for op_slice in slices] for slices in op_slices]


def get_aligned_op_slice_sizes(op_slices, input_op_slices, output_op_slices):
  """Returns the coarsest slice sizes that refine an op and its neighbours.

  For example slices [2, 5] and [3, 4] align as [2, 1, 4]: every op can be
  resliced to those sizes, after which slice i of each op can be grouped.

  Args:
    op_slices: list of OpSlice of the op.
    input_op_slices: list (per input op) of lists of OpSlice.
    output_op_slices: list (per output op) of lists of OpSlice.

  Returns:
    List of int.
  """
  sizes = [s.slice.size for s in op_slices]
  all_sizes = [sizes]
  for slices in input_op_slices + output_op_slices:
    other = [s.slice.size for s in slices]
    if other != sizes:
      all_sizes.append(other)
  return get_aligned_sizes(all_sizes)


def get_aligned_sizes(op_slice_sizes):
  """Returns the coarsest common refinement of several lists of slice sizes.

  Args:
    op_slice_sizes: list (per op) of lists of positive int, all with the same
      total.

  Returns:
    List of int: the sizes between the union of every list's boundaries.

  Raises:
    ValueError: if `op_slice_sizes` is empty or the totals differ.
  """
  if not op_slice_sizes:
    raise ValueError('Cannot align empty op slice lists.')
  totals = {sum(sizes) for sizes in op_slice_sizes}
  if len(totals) > 1:
    raise ValueError(
        'Total size for op slices do not match: %s' % op_slice_sizes)
  if len(op_slice_sizes) == 1 or all(
      sizes == op_slice_sizes[0] for sizes in op_slice_sizes):
    return list(op_slice_sizes[0])
  boundaries = set()
  for sizes in op_slice_sizes:
    boundaries.update(_boundaries(sizes))
  return _sizes(sorted(boundaries))


def _boundaries(sizes):
  """Returns the end of each slice: [2, 3] -> [2, 5]."""
  ends, total = [], 0
  for size in sizes:
    total += size
    ends.append(total)
  return ends


def _sizes(ends):
  """Inverse of `_boundaries`: [2, 5] -> [2, 3]."""
  return [end - start for start, end in zip([0] + ends[:-1], ends)]


def _get_num_slices(op_slice_sizes):
  """Returns the largest number of slices of any op in `op_slice_sizes`."""
  return max(len(sizes) for sizes in op_slice_sizes)


def reslice_concat_ops(concat_ops, aligned_op_slice_sizes, op_reg_manager):
  """Reslices the inputs of a concat so they align with `aligned` sizes.

  The inputs are laid end to end: input k must be sliced into the aligned
  sizes that cover its channels of the concat.

  Args:
    concat_ops: list of tf.Operation, the concat's inputs in order.
    aligned_op_slice_sizes: list of int over the concat's channels.
    op_reg_manager: the OpRegularizerManager.

  Raises:
    ValueError: if an input's channels do not end on an aligned boundary.
  """
  index = 0
  for concat_op in concat_ops:
    sizes = get_op_slice_sizes([op_reg_manager.get_op_slices(concat_op)])[0]
    if sizes == aligned_op_slice_sizes[index:index + len(sizes)]:
      index += len(sizes)
      continue
    op_size, count = sum(sizes), 1
    while get_total_slice_size(aligned_op_slice_sizes, index, count) < op_size:
      count += 1
    if get_total_slice_size(aligned_op_slice_sizes, index, count) != op_size:
      raise ValueError('Could not properly slice op: %s' % concat_op)
    op_reg_manager.slice_op(concat_op,
                            aligned_op_slice_sizes[index:index + count])
    index += count


def get_total_slice_size(op_slice_sizes, index, slice_count):
  """Returns the sum of `slice_count` sizes starting at `index`."""
  return sum(op_slice_sizes[index:index + slice_count])


def reslice_ops(ops, aligned_op_slice_sizes, op_reg_manager):
  """Reslices every op with slices into `aligned_op_slice_sizes`."""
  for op in ops:
    sizes = [s.slice.size for s in op_reg_manager.get_op_slices(op)]
    if sizes and sizes != aligned_op_slice_sizes:
      op_reg_manager.slice_op(op, aligned_op_slice_sizes)


def _get_source_op_slices(op_slices, op_reg_manager):
  """Returns the distinct source OpSlices of the groups of `op_slices`."""
  sources, seen = [], set()
  for op_slice in op_slices:
    group = op_reg_manager.get_op_group(op_slice)
    for source in (group.source_op_slices if group is not None else ()):
      if source not in seen:
        seen.add(source)
        sources.append(source)
  return sources


def group_aligned_input_output_slices(
    op, input_ops_to_process, output_ops_to_process, input_op_slices,
    output_op_slices, aligned_op_slice_sizes, op_reg_manager):
  """Groups `op` with aligned neighbours, or queues what is not ready.

  * No neighbour waits: group with inputs and outputs.
  * Only outputs wait: group with the inputs and queue those outputs.
  * Some input waits: queue the waiting neighbours and `op` itself (last),
    so it runs again once its inputs have groups.

  Args:
    op: the tf.Operation being grouped, aligned with its neighbours.
    input_ops_to_process: input ops that cannot be grouped yet.
    output_ops_to_process: output ops that cannot be grouped yet.
    input_op_slices: list (per input op to group) of lists of OpSlice.
    output_op_slices: list (per output op to group) of lists of OpSlice.
    aligned_op_slice_sizes: list of int.
    op_reg_manager: the OpRegularizerManager.
  """
  if not input_ops_to_process and not output_ops_to_process:
    group_op_with_inputs_and_outputs(op, input_op_slices, output_op_slices,
                                     aligned_op_slice_sizes, op_reg_manager)
  elif not input_ops_to_process:
    group_op_with_inputs_and_outputs(op, input_op_slices, [],
                                     aligned_op_slice_sizes, op_reg_manager)
    op_reg_manager.process_ops(output_ops_to_process)
  else:
    op_reg_manager.process_ops(output_ops_to_process + input_ops_to_process)
    op_reg_manager.process_ops_last([op])


# Memo of get_op_size while managers analyse graphs (see cached_op_sizes):
# op -> size, or None outside any analysis. Sizes are static facts of the
# graph, so concurrent analyses may share it.
_op_size_memo = None
_op_size_memo_users = 0
_op_size_memo_lock = threading.Lock()


@contextlib.contextmanager
def cached_op_sizes():
  """Memoizes `get_op_size` inside the block (shapes must not change in it).

  The manager wraps its analysis in this: handlers ask for the same sizes
  many times, and reading a static shape costs microseconds each time.

  Yields:
    None.
  """
  global _op_size_memo, _op_size_memo_users
  with _op_size_memo_lock:
    if _op_size_memo is None:
      _op_size_memo = {}
    _op_size_memo_users += 1
  try:
    yield
  finally:
    with _op_size_memo_lock:
      _op_size_memo_users -= 1
      if not _op_size_memo_users:
        _op_size_memo = None


def get_op_size(op):
  """Returns the number of channels of an op (0 if none or unknown).

  That is the last dimension of the first output, except for a split along
  the channel axis, whose channels are those of all its outputs.

  Args:
    op: a tf.Operation.

  Returns:
    int.
  """
  memo = _op_size_memo
  if memo is None:
    return _compute_op_size(op)
  size = memo.get(op)
  if size is None:
    size = memo[op] = _compute_op_size(op)
  return size


def _compute_op_size(op):
  """get_op_size without the memo."""
  outputs = op.outputs
  if not outputs:
    return 0
  if op.type in OP_TYPES_WITH_MULTIPLE_OUTPUTS and _splits_channels(op):
    sizes = [get_num_channels(tensor) for tensor in outputs]
    return 0 if None in sizes else sum(sizes)
  return get_num_channels(outputs[0]) or 0


def _splits_channels(op):
  """Whether a Split/SplitV splits its value along the last axis."""
  if op.type == 'Split':
    axis, value = op.inputs[0], op.inputs[1]
  else:
    value, axis = op.inputs[0], op.inputs[2]
  axis = get_constant_value(axis)
  return axis is not None and is_channel_axis(axis, value.shape.rank)


def separate_same_size_ops(reference_op, ops):
  """Splits `ops` into (same size as `reference_op`, other non-empty sizes)."""
  same_size_ops, different_size_ops = [], []
  reference_size = get_op_size(reference_op)
  for op in ops:
    size = get_op_size(op)
    if size == reference_size:
      same_size_ops.append(op)
    elif size > 0:
      different_size_ops.append(op)
  return same_size_ops, different_size_ops


def group_match(regex, op_slices):
  """Whether `regex` is found in the op name of some OpSlice (never if empty)."""
  if not regex:
    return False
  pattern = re.compile(regex)
  return any(pattern.search(op_slice.op.name) for op_slice in op_slices)
