"""GroupingOpHandler: output channels are the channels of the inputs.

Used for element-wise ops (Add, Mul, Relu, BiasAdd, ...), pooling and resize
ops (first input only), and as the default for op types without a handler.
"""

from typing import Optional, Sequence

from morph_net.framework import op_handler
from morph_net.framework import op_handler_util


class GroupingOpHandler(op_handler.OpHandler):
  """Groups the output channels with those of its inputs of the same width.

  Inputs whose channel count differs from the output's (broadcast scalars,
  shapes, paddings) are not grouped.

  Args:
    input_indices: indices of the inputs to group with; None means all.
  """

  def __init__(self, input_indices: Optional[Sequence[int]] = None):
    self._input_indices = (None if input_indices is None else
                           tuple(input_indices))

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return True

  def _inputs_to_group(self, op):
    if self._input_indices is None:
      return list(op.inputs)
    return [op.inputs[i] for i in self._input_indices if i < len(op.inputs)]

  def assign_grouping(self, op, op_reg_manager):
    if not op.outputs:
      return
    for tensor in self._inputs_to_group(op):
      op_reg_manager.group_tensors(op.outputs[0], tensor)


class ReductionOpHandler(GroupingOpHandler):
  """Mean/Sum/Max/...: groups with the first input unless channels are reduced.

  Global pooling (`Mean` over axes 1 and 2) keeps channels and is grouped;
  a reduction over the channel axis starts a new channel space.
  """

  def __init__(self):
    super().__init__(input_indices=(0,))

  def assign_grouping(self, op, op_reg_manager):
    if len(op.inputs) < 2:
      return
    axes = op_handler_util.get_constant_value(op.inputs[1])
    if axes is None:
      return
    rank = op.inputs[0].shape.rank
    if any(op_handler_util.is_channel_axis(a, rank) for a in axes.reshape(-1)):
      return
    super().assign_grouping(op, op_reg_manager)
