"""Conv2DTransposeSourceOpHandler: group lasso on transposed conv kernels."""

from morph_net.op_handlers import group_lasso_base_op_handler


class Conv2DTransposeSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Conv2DBackpropInput / Conv3DBackpropInputV2: kernel [..., out, in]."""

  def output_dim(self, op):
    return -2
