"""ConvSourceOpHandler: group lasso on Conv2D / Conv3D kernels."""

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.op_handlers import group_lasso_base_op_handler

__all__ = ['Conv2DSourceOpHandler', 'ConvSourceOpHandler']

# Kernel dimensions reduced per op type: all but the last (output) one.
_REDUCE_DIMS = {'Conv2D': (0, 1, 2), 'Conv3D': (0, 1, 2, 3)}


class ConvSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Kernel [..., in, out]: each output channel's filter is one group."""

  def _reduce_dims(self, op):
    if op.type not in _REDUCE_DIMS:
      raise errors.UnsupportedGraphError(
          'ConvSourceOpHandler handles Conv2D and Conv3D ops, not op %s. '
          'Register it only for those types.' % graph_util.describe_op(op))
    return _REDUCE_DIMS[op.type]


# The original's other name for the same handler.
Conv2DSourceOpHandler = ConvSourceOpHandler
