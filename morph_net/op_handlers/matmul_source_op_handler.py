"""MatMulSourceOpHandler: group lasso on MatMul weights."""

from morph_net.framework import graph_util
from morph_net.framework import op_vocabulary
from morph_net.op_handlers import group_lasso_base_op_handler

__all__ = ['MatMulSourceOpHandler', 'BatchMatMulSourceOpHandler']


class MatMulSourceOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Weights [in, out], or [out, in] with transpose_b: one group per unit."""

  def _reduce_dims(self, op):
    try:
      transpose_b = op.get_attr('transpose_b')
    except ValueError:  # An op type without the attribute.
      transpose_b = False
    return (1,) if transpose_b else (0,)


class BatchMatMulSourceOpHandler(MatMulSourceOpHandler):
  """A batch matmul of activations by a 2-D kernel read (an EinsumDense
  'abc,cd->abd'): its [in, out] weights regularize the output channels.

  Any other batch matmul (of two activations, the attention products, or
  of a reshaped kernel: the projections of a MultiHeadAttention) is no
  source and starts a new channel space, as before.
  """

  def is_source(self, op):
    if len(op.inputs) < 2 or op.inputs[1].shape.rank != 2:
      return False
    for attribute in ('adj_x', 'adj_y'):
      try:
        if op.get_attr(attribute):
          return False
      except ValueError:
        pass
    weights = op_vocabulary.walk_back(op.inputs[1])  # Not through reshapes.
    return graph_util.reads_variable(weights)
