"""GroupingOpHandler: output channels are the channels of the inputs.

For element-wise ops (Add, Mul, Relu, BiasAdd, ...), pooling and resize ops
(first input only), and the default for op types without a handler.
"""

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import leaf_op_handler

__all__ = ['GroupingOpHandler', 'ReductionOpHandler']


class GroupingOpHandler(op_handler.OpHandler):
  """Groups an op's channels with its inputs and outputs of the same width.

  Inputs of another width are broadcasts (one channel, ignored) or not ready
  yet: the op then waits (`process_ops_last`) until they have groups. Two
  project extensions keep that wait finite where the original's would not
  end:

  * a handler limited to some inputs (`grouping_indices`, e.g. Pad or Tile)
    whose inputs all differ in width starts a new channel space (Pad or Tile
    along the channels), and an op without channels (a scalar) never waits;
  * an input that is one output of a split (a part of its producer's
    channels) is grouped with that part directly.

  Args:
    grouping_indices: indices of the inputs to group with (None: all). For
      example [0] for resize ops, whose second input is a size.
  """

  def __init__(self, grouping_indices=None):
    self._grouping_indices = grouping_indices

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return True

  def assign_grouping(self, op, op_reg_manager):
    """Groups `op` with its inputs and outputs, or queues it to wait.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    self._group_with_neighbours(op, op_reg_manager, self._grouping_indices)

  def create_regularizer(self, _):
    raise NotImplementedError('Not a source op.')

  def _group_with_neighbours(self, op, op_reg_manager, grouping_indices):
    """The grouping flow, for the inputs at `grouping_indices`."""
    util = op_handler_util
    input_ops = util.get_input_ops(op, op_reg_manager, grouping_indices)
    partial_inputs = _group_partial_inputs(op, op_reg_manager,
                                           grouping_indices)
    if partial_inputs:
      input_ops = [o for o in input_ops if o not in partial_inputs]
    neighbours = handler_steps.find_neighbours(op, op_reg_manager, input_ops)
    output_ops_to_group = neighbours.output_ops_to_group
    output_ops_to_process = neighbours.output_ops_to_process
    input_ops_to_group, input_ops_to_process = util.separate_same_size_ops(
        op, input_ops)
    input_ops_to_process = [o for o in input_ops_to_process
                            if not self._is_broadcast(o, op_reg_manager)]
    if input_ops_to_process and (
        not util.get_op_size(op) or
        (grouping_indices is not None and not input_ops_to_group)):
      input_ops_to_process = []  # A new channel space: nothing to wait for.
    handler_steps.append_missing(input_ops_to_process,
                                 neighbours.input_ops_without_group)
    handler_steps.append_missing(output_ops_to_process,
                                 neighbours.output_ops_without_group)

    op_slices = op_reg_manager.get_op_slices(op)
    input_op_slices = util.get_op_slices(input_ops_to_group, op_reg_manager)
    output_op_slices = util.get_op_slices(output_ops_to_group, op_reg_manager)
    aligned_op_slice_sizes = util.get_aligned_op_slice_sizes(
        op_slices, input_op_slices, output_op_slices)
    util.reslice_ops(input_ops_to_group + [op] + output_ops_to_group,
                     aligned_op_slice_sizes, op_reg_manager)
    input_op_slices, output_op_slices = self._get_input_output_op_slices(
        input_ops_to_group, output_ops_to_group, op_reg_manager)
    util.group_aligned_input_output_slices(
        op, input_ops_to_process, output_ops_to_process, input_op_slices,
        output_op_slices, aligned_op_slice_sizes, op_reg_manager)

  def _get_input_output_op_slices(self, input_ops, output_ops,
                                  op_reg_manager):
    """Returns (slices per input op, slices per output op)."""
    return (op_handler_util.get_op_slices(input_ops, op_reg_manager),
            op_handler_util.get_op_slices(output_ops, op_reg_manager))

  def _is_broadcast(self, op, op_reg_manager):
    """Whether `op` is a grouped single channel (broadcast, not grouped)."""
    groups = [op_reg_manager.get_op_group(op_slice)
              for op_slice in op_reg_manager.get_op_slices(op)]
    return op_handler_util.get_op_size(op) == 1 and all(groups)


def _group_partial_inputs(op, op_reg_manager, grouping_indices):
  """Groups `op` with inputs that are one part of their producer's channels.

  Such an input is one output of a Split along the channels: its producer's
  channel space is the split's input, and the output is a range of it (the
  producer's handler says which, through `manager.channel_range`).

  Args:
    op: the tf.Operation being grouped.
    op_reg_manager: the OpRegularizerManager.
    grouping_indices: indices of the inputs to consider, or None for all.

  Returns:
    List of the producers grouped this way (to leave out of the rest of the
    flow).
  """
  producers, ungrouped = [], []
  size = None
  for index, tensor in enumerate(op.inputs):
    producer = tensor.op
    if ((grouping_indices is not None and index not in grouping_indices) or
        len(producer.outputs) < 2 or producer not in op_reg_manager.ops):
      continue
    channels = op_handler_util.get_num_channels(tensor)
    if not channels or channels == op_handler_util.get_op_size(producer):
      continue
    if size is None:
      size = op_handler_util.get_op_size(op)
    channel_range = (op_reg_manager.channel_range(tensor)
                     if channels == size else None)
    if channel_range is None:
      continue
    # Ungrouped, the producer has not run: the grouping gives its
    # channels a group, and it is queued so its handler still groups
    # its inputs.
    handler_steps.append_missing(ungrouped, (
        op_handler_util.get_ops_without_groups([producer], op_reg_manager)))
    handler_steps.group_channel_ranges(op, 0, producer, channel_range[1],
                                       size, op_reg_manager)
    producers.append(producer)
  if producers:  # One call, as before the grouping-order fix.
    op_reg_manager.process_ops(ungrouped)
  return producers


class ReductionOpHandler(GroupingOpHandler):
  """Mean/Sum/Max/...: groups with the first input unless channels are reduced.

  Global pooling (`Mean` over axes 1 and 2) keeps the channels and groups
  like an element-wise op; a reduction over the channel axis (or over unknown
  axes) starts a new channel space. Project extension.
  """

  def __init__(self):
    super().__init__(grouping_indices=[0])

  def assign_grouping(self, op, op_reg_manager):
    """Groups a channel-keeping reduction; treats the others as leaves.

    Args:
      op: a reduction tf.Operation (input 1 holds the axes).
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    axes = (op_handler_util.get_constant_value(op.inputs[1])
            if len(op.inputs) > 1 else None)
    rank = op.inputs[0].shape.rank
    if axes is None or any(op_handler_util.is_channel_axis(axis, rank)
                           for axis in axes.reshape(-1)):
      leaf_op_handler.group_with_outputs(op, op_reg_manager)
      return
    super().assign_grouping(op, op_reg_manager)
