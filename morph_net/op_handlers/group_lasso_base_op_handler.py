"""GroupLassoBaseSourceOpHandler: the weights of an op as regularization source.

The output channels of a Conv2D, Conv3D, transposed conv or MatMul are
regularized by the group-lasso norm of their slice of the weights (input 1).
Subclasses say which weight dimensions to reduce (`_reduce_dims`); the one
left indexes the output channels.
"""

import abc

import tensorflow as tf

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import output_non_passthrough_op_handler
from morph_net.op_regularizers import group_lasso_regularizer

__all__ = ['GroupLassoBaseSourceOpHandler']


class GroupLassoBaseSourceOpHandler(
    output_non_passthrough_op_handler.OutputNonPassthroughOpHandler):
  """Source handler regularizing output channels by their weights' norm.

  Grouping is that of OutputNonPassthroughOpHandler, after the op's slices
  get groups of their own as sources. Ops whose second input is neither a
  variable nor a constant (for example a matmul of two activations) are not
  sources.

  Args:
    threshold: alive threshold on the group-lasso norm.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
  """

  def __init__(self, threshold, l1_fraction=0.0):
    self._threshold = threshold
    self._l1_fraction = l1_fraction

  @abc.abstractmethod
  def _reduce_dims(self, op):
    """Returns the weight dimensions to reduce (all but the output one)."""

  def _weights(self, op):
    """Returns the weights tensor of a source op (input 1)."""
    return op.inputs[1]

  @property
  def is_source_op(self):
    return True

  def is_source(self, op):
    return len(op.inputs) > 1 and graph_util.holds_weights(op.inputs[1])

  def assign_grouping(self, op, op_reg_manager):
    """Makes the op's slices sources, then groups it with its outputs.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    if self.is_source(op):
      handler_steps.make_sources(op, op_reg_manager)
    super().assign_grouping(op, op_reg_manager)

  def create_regularizer(self, op_slice):
    """Returns a GroupLassoRegularizer of the slice's weights.

    Args:
      op_slice: an OpSlice of a source op.

    Returns:
      A GroupLassoRegularizer whose vectors have `op_slice.slice.size`
      entries.

    Raises:
      UnsupportedGraphError: if the weights' rank does not match
        `_reduce_dims`.
    """
    op = op_slice.op
    reduce_dims = tuple(self._reduce_dims(op))
    weights = self._weights(op)
    rank = weights.shape.rank
    output_dims = [d for d in range(rank or 0) if d not in reduce_dims]
    if rank is None or len(output_dims) != 1:
      raise errors.UnsupportedGraphError(
          'Op %s: weights of rank %s do not match the reduction dimensions %s '
          'of %s. Register a source handler whose _reduce_dims leaves exactly '
          'one (output) dimension.' % (graph_util.describe_op(op), rank,
                                       reduce_dims, type(self).__name__))
    output_dim = output_dims[0]
    start, size = op_slice.slice.start_index, op_slice.slice.size
    if start != 0 or size != tf.compat.dimension_value(
        weights.shape[output_dim]):
      index = [slice(None)] * rank
      index[output_dim] = slice(start, start + size)
      weights = weights[tuple(index)]
    return group_lasso_regularizer.GroupLassoRegularizer(
        weight_tensor=weights, reduce_dims=reduce_dims,
        threshold=self._threshold, l1_fraction=self._l1_fraction)

