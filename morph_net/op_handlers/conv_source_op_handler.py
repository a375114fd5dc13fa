"""ConvSourceOpHandler: group lasso on Conv2D / Conv3D kernels."""

from morph_net.op_handlers import group_lasso_base_op_handler


class ConvSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Kernel [..., in, out]: output channels are the last dimension."""

  def output_dim(self, op):
    return -1
