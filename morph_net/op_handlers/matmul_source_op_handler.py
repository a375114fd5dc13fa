"""MatMulSourceOpHandler: group lasso on MatMul weights."""

from morph_net.op_handlers import group_lasso_base_op_handler


class MatMulSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Weights [in, out], or [out, in] with transpose_b."""

  def output_dim(self, op):
    try:
      return 0 if op.get_attr('transpose_b') else 1
    except ValueError:
      return 1
