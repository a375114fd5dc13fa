"""GroupLassoBaseSourceOpHandler: weights of conv/matmul ops as sources."""

import abc
from typing import Optional, Sequence

import tensorflow as tf

from morph_net.framework import op_handler_util
from morph_net.op_handlers import output_non_passthrough_op_handler
from morph_net.op_regularizers import group_lasso_regularizer


class GroupLassoBaseSourceOpHandler(
    output_non_passthrough_op_handler.OutputNonPassthroughOpHandler):
  """Regularizes the output channels of an op by the norm of its weights.

  Subclasses say where the weights are and which dimension holds the output
  channels. Ops whose weights are not variables (for example a matmul of two
  activations) are not sources.

  Args:
    threshold: alive threshold on the group lasso norm.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
  """

  def __init__(self, threshold: float, l1_fraction: float = 0.0):
    self._threshold = threshold
    self._l1_fraction = l1_fraction

  @property
  def is_source_op(self):
    return True

  def weight_tensor(self, op: tf.Operation) -> tf.Tensor:
    """The weights of `op`; input 1 by default."""
    return op.inputs[1]

  @abc.abstractmethod
  def output_dim(self, op: tf.Operation) -> int:
    """The dimension of the weights that indexes output channels."""

  def is_source(self, op):
    return (len(op.inputs) > 1 and
            op_handler_util.reads_variable(self.weight_tensor(op)))

  def create_regularizer(self, op_slice):
    op = op_slice.op
    weights = self.weight_tensor(op)
    rank = weights.shape.rank
    output_dim = self.output_dim(op) % rank
    start, size = op_slice.slice.start_index, op_slice.slice.size
    if start != 0 or size != weights.shape[output_dim]:
      begin = [0] * rank
      begin[output_dim] = start
      sizes = [-1] * rank
      sizes[output_dim] = size
      weights = tf.slice(weights, begin, sizes)
    reduce_dims = [d for d in range(rank) if d != output_dim]
    return group_lasso_regularizer.GroupLassoRegularizer(
        weights, reduce_dims, self._threshold, self._l1_fraction)
