"""MatMulSourceOpHandler: group lasso on MatMul weights."""

from morph_net.op_handlers import group_lasso_base_op_handler

__all__ = ['MatMulSourceOpHandler']


class MatMulSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Weights [in, out], or [out, in] with transpose_b: one group per unit."""

  def _reduce_dims(self, op):
    try:
      transpose_b = op.get_attr('transpose_b')
    except ValueError:  # An op type without the attribute.
      transpose_b = False
    return (1,) if transpose_b else (0,)
