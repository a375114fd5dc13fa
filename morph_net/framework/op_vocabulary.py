"""The op vocabulary: TensorFlow op types by what they do to channels.

Every set of op types the analysis, the costs and the Keras bridge share is
defined here, once; the other modules import them (the op handler registry
in `op_handlers.op_handlers`, the cost side in
`network_regularizers.op_types`, the function-call reader in
`function_calls`, the tracer in `keras.tracing`).

`walk_back` is the one walk from a tensor back to the value it forwards --
through forwarding ops and, on request, through reshape-like ops -- that the
analysis uses to find the variable a kernel or a batch-norm scale is read
from. It stops after `MAX_WALK_STEPS` ops.
"""

from typing import Callable, Optional

import tensorflow as tf

__all__ = [
    'FORWARDING_OP_TYPES', 'VARIABLE_OP_TYPES', 'CONCAT_OP_TYPES',
    'RESHAPE_LIKE_OP_TYPES', 'REDUCTION_OP_TYPES', 'CALL_OP_TYPES',
    'LOOP_OP_TYPES', 'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES',
    'DEPTHWISE_OP_TYPES', 'MATMUL_OP_TYPES', 'EINSUM_OP_TYPES',
    'FUSED_BATCH_NORM_OP_TYPES', 'MAX_WALK_STEPS', 'walk_back',
]

# Ops that only forward their first input (a read of a variable, a cast,
# the entry of a TF1 loop).
FORWARDING_OP_TYPES = frozenset(
    ['Identity', 'ReadVariableOp', 'Cast', 'Enter', 'Snapshot'])
# Ops that hold a variable (a resource handle or a TF1 reference variable).
VARIABLE_OP_TYPES = frozenset(['VariableV2', 'Variable', 'VarHandleOp'])
# Concatenations (of channels; also of the partitions of a partitioned TF1
# variable).
CONCAT_OP_TYPES = frozenset(['ConcatV2', 'Concat'])
# Ops that change the shape of a tensor without moving an element: Keras'
# Conv1D expands its kernel, a Dense on rank >= 3 reshapes it (Tensordot),
# batch norm with an explicit axis reshapes its parameters to [1, .., 1, C].
RESHAPE_LIKE_OP_TYPES = frozenset(['ExpandDims', 'Reshape', 'Squeeze'])
# Reductions over some axes; input 1 holds the axes, not activations.
REDUCTION_OP_TYPES = frozenset(
    ['EuclideanNorm', 'Max', 'Mean', 'Min', 'Prod', 'Sum'])
# Calls of a function of the graph's library (Keras 3 compiles grouped and
# some depthwise convs into one); see `function_calls`.
CALL_OP_TYPES = frozenset(['StatefulPartitionedCall', 'PartitionedCall'])
# Functional loops (Keras 3 recurrent layers); their body is a function.
LOOP_OP_TYPES = frozenset(['While', 'StatelessWhile'])
# Ops with weights: arithmetic bilinear in input and output channels.
CONV_OP_TYPES = frozenset(['Conv2D', 'Conv3D'])
CONV_TRANSPOSE_OP_TYPES = frozenset(
    ['Conv2DBackpropInput', 'Conv3DBackpropInputV2'])
DEPTHWISE_OP_TYPES = frozenset(['DepthwiseConv2dNative'])
MATMUL_OP_TYPES = frozenset(
    ['MatMul', 'BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3'])
# Two-operand contractions (attention products, EinsumDense).
EINSUM_OP_TYPES = frozenset(['Einsum'])
# Batch norm in one op (TF1 layers, tf_keras); Keras 3 decomposes it.
FUSED_BATCH_NORM_OP_TYPES = frozenset(
    ['FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3'])

# The most ops `walk_back` follows from one tensor. Real graphs put at most
# a handful of forwarding and reshape ops between a variable and its user
# (read, cast, expand, identity under a distribution strategy); the bound
# only stops a walk round a malformed cycle.
MAX_WALK_STEPS = 64


def walk_back(tensor: tf.Tensor, through_reshapes: bool = False,
              reshape_filter: Optional[Callable[[tf.Tensor], bool]] = None
              ) -> tf.Tensor:
  """The first tensor upstream of `tensor` that is not merely forwarded.

  Follows the first input of forwarding ops (`FORWARDING_OP_TYPES`) and,
  with `through_reshapes`, of reshape-like ops (`RESHAPE_LIKE_OP_TYPES`).
  A walk that starts at a value never steps into a resource handle: for a
  variable read the read is returned, not the handle.

  Args:
    tensor: a tf.Tensor (TF1 or TF2 graph).
    through_reshapes: also follow reshape-like ops.
    reshape_filter: with `through_reshapes`, follow a reshape-like op only
      when `reshape_filter(its output)` is true (default: always).

  Returns:
    The tensor where the walk stopped (`tensor` itself if its producer is
    neither), after at most `MAX_WALK_STEPS` ops.
  """
  start_is_handle = tensor.dtype == tf.resource
  for _ in range(MAX_WALK_STEPS):
    op = tensor.op
    if not op.inputs:
      break
    if op.type not in FORWARDING_OP_TYPES and not (
        through_reshapes and op.type in RESHAPE_LIKE_OP_TYPES and
        (reshape_filter is None or reshape_filter(tensor))):
      break
    inner = op.inputs[0]
    if inner.dtype == tf.resource and not start_is_handle:
      break
    tensor = inner
  return tensor
