"""CostCalculator: sums a resource function over the ops of a network.

For every costed op the calculator reads, from the OpRegularizerManager, how
many of the op's input and output channels are alive and the sum of their
regularization vectors, and passes them to the resource function (see
`resource_function`). The total is the network's cost (`get_cost`) or its
regularization term (`get_regularization_term`).

What the calculator needs from the manager: `ops`, `graph`,
`get_regularizer(op)`, `get_num_channels(op)` and `channel_range(tensor)`
(the producer op and the range of its channels a tensor holds). Channels
without a regularizer count as alive with zero regularization.

Graph size: every (producer, channel range) gets one alive count and one
regularization sum, shared by all the ops that read it and by both totals;
channels without a regularizer are Python numbers, so the ops they touch
cost nothing in the graph; each total is one add_n.
"""

from typing import Callable, Optional, Sequence

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_util

__all__ = [
    'CONV2D_OPS', 'CONV3D_OPS', 'CONV_OPS', 'FLOP_OPS', 'SUPPORTED_OPS',
    'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES', 'DEPTHWISE_OP_TYPES',
    'MATMUL_OP_TYPES', 'WEIGHTED_OP_TYPES', 'ELEMENTWISE_MEMORY_OP_TYPES',
    'COSTED_OP_TYPES', 'CostCalculator', 'get_input_activation',
    'reads_variable',
]

# The original's op type tuples.
CONV2D_OPS = ('Conv2D', 'Conv2DBackpropInput', 'DepthwiseConv2dNative')
CONV3D_OPS = ('Conv3D',)
CONV_OPS = CONV2D_OPS + CONV3D_OPS
FLOP_OPS = CONV_OPS + ('MatMul',)
SUPPORTED_OPS = FLOP_OPS + ('Add', 'AddV2', 'AddN', 'ConcatV2',
                            'FusedBatchNorm', 'FusedBatchNormV2',
                            'FusedBatchNormV3', 'Mul', 'Relu', 'Relu6', 'Sum')

# The same, with the op types this project costs beyond the original.
CONV_OP_TYPES = frozenset(['Conv2D', 'Conv3D'])
CONV_TRANSPOSE_OP_TYPES = frozenset(
    ['Conv2DBackpropInput', 'Conv3DBackpropInputV2'])
DEPTHWISE_OP_TYPES = frozenset(['DepthwiseConv2dNative'])
MATMUL_OP_TYPES = frozenset(
    ['MatMul', 'BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3'])
# Ops with weights, whose cost is bilinear in input and output channels.
WEIGHTED_OP_TYPES = (CONV_OP_TYPES | CONV_TRANSPOSE_OP_TYPES |
                     DEPTHWISE_OP_TYPES | MATMUL_OP_TYPES)
# Cheap ops that move memory (costed by memory and latency functions).
ELEMENTWISE_MEMORY_OP_TYPES = (
    frozenset(SUPPORTED_OPS) - frozenset(FLOP_OPS)) | frozenset([
        'AvgPool', 'BiasAdd', 'Elu', 'LeakyRelu', 'MaxPool', 'Sigmoid', 'Sub',
        'Tanh'])
COSTED_OP_TYPES = WEIGHTED_OP_TYPES | ELEMENTWISE_MEMORY_OP_TYPES

reads_variable = op_handler_util.reads_variable


def get_input_activation(op: tf.Operation) -> tf.Tensor:
  """Returns the input of `op` that holds activations (not weights).

  Args:
    op: an op of a type in COSTED_OP_TYPES.

  Returns:
    The activation input, whose last dimension is the input channels: input
    2 of a transposed conv, input 0 otherwise.

  Raises:
    InvalidArgumentError: for other op types, and for matmuls whose
      activation is transposed (its channels are not the last dimension).
  """
  if op.type not in COSTED_OP_TYPES:
    raise errors.InvalidArgumentError(
        'Op %s has no input activation the cost calculator knows: op type %s '
        'is not one of %s.' % (op_handler_util.describe_op(op), op.type,
                               ', '.join(sorted(COSTED_OP_TYPES))))
  if op.type in CONV_TRANSPOSE_OP_TYPES:
    return op.inputs[2]
  if op.type in MATMUL_OP_TYPES:
    transposed = ('transpose_a' if op.type == 'MatMul' else 'adj_x')
    if op.get_attr(transposed):
      raise errors.InvalidArgumentError(
          'Op %s multiplies a transposed activation (%s=True), whose '
          'channels are not its last dimension.' % (
              op_handler_util.describe_op(op), transposed))
  return op.inputs[0]


def _has_dynamic_shapes(graph) -> bool:
  """TF1 graphs run with their inputs fed; traced functions may not be."""
  return not hasattr(graph, 'captures')  # FuncGraphs have captures.


class CostCalculator(object):
  """Computes the cost and the regularization term of a network.

  Args:
    op_regularizer_manager: the OpRegularizerManager of the network.
    resource_function: a function of `resource_function`'s signature.
    batch_size: passed to the resource function as `batch_size`, if set.
    dynamic_shapes: whether spatial sizes unknown in the graph may be read at
      run time (tf.shape). Default: yes in TF1 graphs (their inputs are fed
      when the cost is evaluated), no in traced functions (the Keras bridge
      evaluates the cost without inputs), where such an op is an error.
  """

  def __init__(self, op_regularizer_manager, resource_function: Callable,
               batch_size: Optional[int] = None,
               dynamic_shapes: Optional[bool] = None):
    self._manager = op_regularizer_manager
    self._resource_function = resource_function
    self._kwargs = {} if batch_size is None else {'batch_size': batch_size}
    self._dynamic_shapes = (_has_dynamic_shapes(op_regularizer_manager.graph)
                            if dynamic_shapes is None else dynamic_shapes)
    self._costed_types = getattr(resource_function, 'costed_op_types',
                                 COSTED_OP_TYPES)
    # (producer op, start, size) -> (alive count, regularization sum).
    self._channel_cache = {}
    self._warned = set()

  @property
  def resource_function(self) -> Callable:
    return self._resource_function

  def get_cost(self, ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the cost with dead channels removed (float32 scalar tensor).

    Args:
      ops: the ops to cost; None or empty for all ops of the manager.
    """
    return self._total(False, ops)

  def get_regularization_term(self,
                              ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the regularization term (float32 scalar tensor).

    Args:
      ops: the ops to include; None or empty for all ops of the manager.
    """
    return self._total(True, ops)

  def _total(self, is_regularization, ops):
    ops = list(ops) if ops else self._manager.ops
    tensors, number, costed = [], 0.0, 0
    with self._manager.graph.as_default(), tf.name_scope('morph_net_cost'):
      for op in ops:
        if op.type not in self._costed_types:
          continue
        terms = self._channel_terms(op)
        if terms is None:
          continue
        costed += 1
        value = self._resource_function(op, is_regularization, *terms,
                                        **self._kwargs)
        if isinstance(value, (int, float)):
          number += value
        else:
          tensors.append(tf.cast(value, tf.float32))
      if not costed:
        logging.warning('No op among the %d given is costed by %s.', len(ops),
                        getattr(self._resource_function, '__name__',
                                self._resource_function))
      if not tensors:
        return tf.constant(number, tf.float32)
      total = tensors[0] if len(tensors) == 1 else tf.add_n(tensors)
      return total + number if number else total

  def _channel_terms(self, op):
    """(alive_in, alive_out, reg_in, reg_out) of `op`, or None to skip it."""
    output_terms = self._terms(op.outputs[0]) if op.outputs else None
    if output_terms is None:
      if op.type in WEIGHTED_OP_TYPES:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of output channels (shape %s), so '
            'its cost cannot be computed. Give the network input a static '
            'channel dimension.' % (op_handler_util.describe_op(op),
                                    op.outputs[0].shape))
      self._warn_once(op, 'its output has no static channel dimension (shape '
                      '%s)' % (op.outputs[0].shape if op.outputs else None))
      return None
    if op.type not in WEIGHTED_OP_TYPES:
      # Element-wise ops: input channels are the output channels.
      if not self._dynamic_shapes:
        self._check_static_sizes(op, [('output', op.outputs[0])])
      return (output_terms[0], output_terms[0], output_terms[1],
              output_terms[1])
    transposed = op.type == 'MatMul' and op.get_attr('transpose_a')
    input_tensor = op.inputs[0] if transposed else get_input_activation(op)
    if not self._dynamic_shapes:
      self._check_static_sizes(op, [('output', op.outputs[0]),
                                    ('input', input_tensor)])
    input_terms = None if transposed else self._terms(input_tensor)
    if input_terms is None:
      channels = tf.compat.dimension_value(
          op.inputs[1].shape[-2] if transposed else
          (input_tensor.shape[-1] if input_tensor.shape.rank else None))
      if channels is None:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of input channels (input %s with '
            'shape %s). Give the network input a static channel dimension.'
            % (op_handler_util.describe_op(op), input_tensor.name,
               input_tensor.shape))
      input_terms = (int(channels), 0.0)
    return (input_terms[0], output_terms[0], input_terms[1], output_terms[1])

  @staticmethod
  def _check_static_sizes(op, tensors):
    """Raises if a spatial size the cost depends on is unknown in the graph."""
    for what, tensor in tensors:
      shape = tensor.shape
      if shape.rank is None or None in shape.as_list()[1:-1]:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown %s size (shape %s), so its cost cannot be '
            'computed without running the graph on an input. Build the model '
            'with a fixed input size, for example keras.Input(shape=(32, 32, '
            '3)).' % (op_handler_util.describe_op(op), what, shape))

  def _warn_once(self, op, reason):
    if op not in self._warned:
      self._warned.add(op)
      logging.warning('Op %s is not costed by %s: %s.',
                      op_handler_util.describe_op(op),
                      getattr(self._resource_function, '__name__',
                              'the resource function'), reason)

  def _terms(self, tensor):
    """(alive count, regularization sum) of a tensor's channels, or None."""
    shape = tensor.shape
    channels = (tf.compat.dimension_value(shape[-1]) if shape.rank else None)
    if channels is None:
      return None
    channel_range = self._manager.channel_range(tensor)
    if channel_range is None:
      return (int(channels), 0.0)
    key = tuple(channel_range)
    if key not in self._channel_cache:
      self._channel_cache[key] = self._alive_and_regularization(*key)
    return self._channel_cache[key]

  def _alive_and_regularization(self, op, start, size):
    """(alive count, regularization sum) of channels [start, +size) of op."""
    regularizer = self._manager.get_regularizer(op)
    if regularizer is None:
      return (size, 0.0)
    alive = regularizer.alive_vector
    reg = regularizer.regularization_vector
    if start != 0 or size != self._manager.get_num_channels(op):
      alive = alive[start:start + size]
      reg = reg[start:start + size]
    return (tf.reduce_sum(tf.cast(alive, tf.float32)), tf.reduce_sum(reg))
