"""Conv2DTransposeSourceOpHandler: group lasso on transposed conv kernels."""

from morph_net.op_handlers import group_lasso_base_op_handler

__all__ = ['Conv2DTransposeSourceOpHandler']


class Conv2DTransposeSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Conv2DBackpropInput / Conv3DBackpropInputV2: kernel [..., out, in]."""

  def _reduce_dims(self, op):
    rank = op.inputs[1].shape.rank or 4
    return tuple(range(rank - 2)) + (rank - 1,)
