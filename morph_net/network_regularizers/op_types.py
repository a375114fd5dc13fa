"""Op types the costs know, and where an op's input activation is.

The original library kept these in `cost_calculator` (which re-exports them):
its tuples CONV2D_OPS, CONV3D_OPS, CONV_OPS, FLOP_OPS, SUPPORTED_OPS, and
`get_input_activation`. The frozensets below add the op types this project
costs beyond the original (3-D transposed convs, batched matmuls, pooling,
bias adds and more element-wise ops for memory and latency).

Where to import op types from: the kinds of ops (convs, matmuls, calls,
reshape-like ops, reductions ...) are defined once, in
`morph_net.framework.op_vocabulary`; this module names the ones the costs
read (CONV_OP_TYPES ... EINSUM_OP_TYPES are those sets) and defines what
the built-in resource functions cost (WEIGHTED_OP_TYPES,
ELEMENTWISE_MEMORY_OP_TYPES, COSTED_OP_TYPES). Cost code imports this
module as `op_types`.
"""

import tensorflow as tf

from morph_net import errors
from morph_net.framework import function_calls
from morph_net.framework import op_handler_util
from morph_net.framework import op_vocabulary

__all__ = [
    'CONV2D_OPS', 'CONV3D_OPS', 'CONV_OPS', 'FLOP_OPS', 'SUPPORTED_OPS',
    'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES', 'DEPTHWISE_OP_TYPES',
    'MATMUL_OP_TYPES', 'WEIGHTED_OP_TYPES', 'ELEMENTWISE_MEMORY_OP_TYPES',
    'COSTED_OP_TYPES', 'CALL_OP_TYPES', 'EINSUM_OP_TYPES',
    'get_input_activation',
    'reads_variable', 'costed_op',
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
CONV_OP_TYPES = op_vocabulary.CONV_OP_TYPES
CONV_TRANSPOSE_OP_TYPES = op_vocabulary.CONV_TRANSPOSE_OP_TYPES
DEPTHWISE_OP_TYPES = op_vocabulary.DEPTHWISE_OP_TYPES
MATMUL_OP_TYPES = op_vocabulary.MATMUL_OP_TYPES
# Calls of a function whose body is one of the ops below (Keras 3 grouped
# convs); costed as that op, see `costed_op`.
CALL_OP_TYPES = op_vocabulary.CALL_OP_TYPES
# Two-operand contractions (attention products, EinsumDense); see
# `einsum_cost`.
EINSUM_OP_TYPES = op_vocabulary.EINSUM_OP_TYPES
# Ops with weights, whose cost is bilinear in input and output channels.
WEIGHTED_OP_TYPES = (CONV_OP_TYPES | CONV_TRANSPOSE_OP_TYPES |
                     DEPTHWISE_OP_TYPES | MATMUL_OP_TYPES | CALL_OP_TYPES |
                     EINSUM_OP_TYPES)
# Cheap ops that move memory (costed by memory and latency functions).
ELEMENTWISE_MEMORY_OP_TYPES = (
    frozenset(SUPPORTED_OPS) - frozenset(FLOP_OPS)) | frozenset([
        'AvgPool', 'BiasAdd', 'Elu', 'LeakyRelu', 'MaxPool', 'Sigmoid', 'Sub',
        'Tanh'])
COSTED_OP_TYPES = WEIGHTED_OP_TYPES | ELEMENTWISE_MEMORY_OP_TYPES

reads_variable = op_handler_util.reads_variable


def costed_op(op: tf.Operation) -> tf.Operation:
  """The op whose arithmetic `op` runs: the body's op for a readable call.

  Args:
    op: a tf.Operation.

  Returns:
    For a call op whose body is one conv or matmul
    (`function_calls.called_op`), that op in the body; else `op`.
  """
  if op.type in CALL_OP_TYPES:
    called = function_calls.called_op(op)
    if called is not None:
      return called.op
  return op


def get_input_activation(op: tf.Operation) -> tf.Tensor:
  """Returns the input of `op` that holds activations (not weights).

  Args:
    op: an op of a type in COSTED_OP_TYPES.

  Returns:
    The activation input, whose last dimension is the input channels: input
    2 of a transposed conv, input 0 otherwise; for a call op, the call's
    input that feeds the called op's activation.

  Raises:
    InvalidArgumentError: for other op types, and for matmuls whose
      activation is transposed (its channels are not the last dimension).
  """
  if op.type in CALL_OP_TYPES:
    called = function_calls.called_op(op)
    if called is None:
      raise errors.InvalidArgumentError(
          'Op %s calls a function whose body is not a single conv or matmul '
          'fed by the call\'s inputs, so it has no input activation the cost '
          'calculator knows.' % op_handler_util.describe_op(op))
    return called.activation
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
