"""LeafOpHandler: ops whose output channels are unrelated to their inputs.

Reshape, Shape, SpaceToDepth, random ops and the like: the output is a new
channel space with no regularizer, so downstream ops see all channels alive.
"""

from morph_net.framework import op_handler


class LeafOpHandler(op_handler.OpHandler):
  """Groups nothing; the analysis of channels stops at this op."""

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return False

  def assign_grouping(self, op, op_reg_manager):
    del op, op_reg_manager  # A leaf groups nothing.
