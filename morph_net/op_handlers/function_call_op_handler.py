"""FunctionCallOpHandler: a call to a function that runs one conv or matmul.

Keras 3 runs a grouped Conv (and some depthwise convs) in a function of its
own, called by a `StatefulPartitionedCall`. The handler reads the body
(`framework.function_calls.called_op`) and groups the call like the op
inside:

* a conv, transposed conv or matmul (grouped or not): the call's output
  channels are a new channel space, grouped with what follows (the batch
  norm under Gamma regularizers). Under group lasso they are their own
  source, regularized by the norm of each output channel's filter (the
  kernel read from the call's resource input in the calling graph).
  The input channels of a grouped conv are NOT grouped with anything: with
  G groups, input channel i feeds only the outputs of group i // (C / G),
  so removing an input channel would have to remove the same position in
  every group, which `surgery` cannot rebuild (builtin_rules.WidthRule
  freezes the inputs of a grouped conv). The inputs are consumed whole;
  the cost is 2 x positions x kernel x (IN / G) x OUT with IN the alive
  input channels, as for a plain conv divided by G.
* a depthwise conv with depth multiplier 1, or a channelwise conv (as many
  groups as channels, `graph_util.is_channelwise_conv`): output channels
  are the input channels (grouped like an element-wise op with the
  activation input; not a group-lasso source, as a depthwise conv is not).
* anything else (several ops with weights, a depth multiplier above 1, a
  kernel not read from the call's inputs): the output is a new channel
  space; the cost calculator warns that the call's cost is not counted.
  Bodies without weights (element-wise helpers) group like element-wise
  ops.

Project extension: the original had no handler for function calls.
"""

import tensorflow as tf

from morph_net.framework import function_calls
from morph_net.framework import graph_util
from morph_net.op_handlers import group_lasso_base_op_handler
from morph_net.op_handlers import grouping_op_handler

__all__ = ['FunctionCallOpHandler']

_SOURCE_TYPES = frozenset(['Conv2D', 'Conv3D', 'MatMul',
                           'Conv2DBackpropInput', 'Conv3DBackpropInputV2'])


def _keeps_channels(op):
  """Whether output channel c of a called conv is its input channel c's: a
  depthwise conv with multiplier 1, or a channelwise conv."""
  if op.type == 'DepthwiseConv2dNative':
    return graph_util.get_num_channels(op.inputs[1]) == 1
  return graph_util.is_channelwise_conv(op)


class FunctionCallOpHandler(
    group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):
  """Groups (and, under group lasso, regularizes) a call like its body's op.

  Args:
    threshold: alive threshold on the group-lasso norm of the called conv's
      filters; None (the default) for registries whose sources are batch
      norms or gates, where calls are never sources.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
  """

  def __init__(self, threshold=None, l1_fraction=0.0):
    super().__init__(threshold, l1_fraction)
    self._reads = {}  # Call op -> kernel read in the calling graph.

  @property
  def is_source_op(self):
    return self._threshold is not None

  @property
  def is_passthrough(self):
    return False

  def is_source(self, op):
    if self._threshold is None:
      return False
    called = function_calls.called_op(op)
    return (called is not None and called.op.type in _SOURCE_TYPES and
            not graph_util.is_channelwise_conv(called.op) and
            called.weights.dtype == tf.resource)

  def assign_grouping(self, op, op_reg_manager):
    """Groups the call like the op it runs.

    Args:
      op: a StatefulPartitionedCall or PartitionedCall tf.Operation.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    called = function_calls.called_op(op)
    if called is None and not function_calls.body_has_weighted_ops(op):
      grouping_op_handler.GroupingOpHandler().assign_grouping(
          op, op_reg_manager)
      return
    if called is not None and _keeps_channels(called.op):
      index = [t.name for t in op.inputs].index(called.activation.name)
      grouping_op_handler.GroupingOpHandler(
          grouping_indices=[index]).assign_grouping(op, op_reg_manager)
      return
    super().assign_grouping(op, op_reg_manager)

  def _reduce_dims(self, op):
    """All kernel dims but the output one (-1; -2 for a transposed conv)."""
    inner = function_calls.called_op(op).op
    rank = inner.inputs[1].shape.rank
    if inner.type == 'MatMul':
      return (1,) if inner.get_attr('transpose_b') else (0,)
    output_dim = rank - 2 if 'Backprop' in inner.type else rank - 1
    return tuple(d for d in range(rank) if d != output_dim)

  def _weights(self, op):
    """The called op's kernel, read in the calling graph from the call's input.

    The read is created once per call, in the graph the regularizers are
    built in (the manager enters it), so the regularizer is differentiable
    with respect to the same variable the call reads.
    """
    if op not in self._reads:
      called = function_calls.called_op(op)
      kernel = called.op.inputs[1]
      read = tf.raw_ops.ReadVariableOp(resource=called.weights,
                                       dtype=kernel.dtype)
      read.set_shape(kernel.shape)
      self._reads[op] = read
    return self._reads[op]
