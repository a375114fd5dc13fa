"""Static facts about the tensors and ops of a graph, as the analysis reads them.

Channels are the last dimension of a tensor (NHWC layout), which is what
Keras, `tf.compat.v1.layers` and tf_slim produce on CPU and what the op
handlers assume. Every function works on TF2 graphs (`FuncGraph` of a traced
`tf.function`) and on TF1 graphs built after
`tf.compat.v1.disable_v2_behavior()`, where shapes hold `Dimension` objects
and variables may be reference variables or partitioned.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from morph_net.framework import op_vocabulary

__all__ = [
    'describe_op', 'get_constant_value', 'get_num_channels', 'holds_weights',
    'is_channel_axis', 'is_channel_vector', 'is_channelwise_conv',
    'normalize_axis', 'reads_variable',
    'skip_forwarding_ops'
]

def get_num_channels(tensor: tf.Tensor) -> Optional[int]:
  """Returns the static size of the last dimension, or None if unknown.

  Args:
    tensor: a tf.Tensor (TF1 or TF2 graph).

  Returns:
    The channel count as an int, or None if the rank or the last dimension is
    unknown, or the tensor is a scalar.
  """
  shape = tensor.shape
  if not shape.rank:  # Unknown rank, or a scalar.
    return None
  size = shape.as_list()[-1]  # Plain ints even in TF1 mode (no Dimension).
  return None if size is None else int(size)


def get_constant_value(tensor: tf.Tensor):
  """Returns the value of a constant tensor as numpy, or None if not constant."""
  try:
    value = tensor_util.constant_value(tensor)
  except (TypeError, ValueError):
    return None
  return None if value is None else np.asarray(value)


def normalize_axis(axis, rank: Optional[int]) -> Optional[int]:
  """Returns a non-negative axis, or None if it cannot be resolved.

  Args:
    axis: an int (negative counts from the end) or None.
    rank: the rank of the tensor, or None if unknown.

  Returns:
    `axis` in [0, rank), or None when `axis` is None or negative with an
    unknown rank.
  """
  if axis is None:
    return None
  axis = int(axis)
  if axis < 0:
    if rank is None:
      return None
    axis += rank
  return axis


def is_channel_axis(axis, rank: Optional[int]) -> bool:
  """Whether `axis` is the last axis of a tensor of rank `rank`."""
  if axis is None:
    return False
  if int(axis) == -1:
    return True
  return rank is not None and normalize_axis(axis, rank) == rank - 1


def is_channel_vector(tensor: tf.Tensor,
                      channels: Optional[int] = None) -> bool:
  """Whether a tensor's static shape is [C] or the broadcast shape [1, .., 1, C].

  Per-channel parameters (batch norm scales, gate masks) have these shapes.

  Args:
    tensor: a tf.Tensor.
    channels: if given, C must equal it.

  Returns:
    False for scalars, unknown ranks and unknown leading dimensions.
  """
  shape = tensor.shape
  if not shape.rank:
    return False
  dims = shape.as_list()
  if channels is not None and dims[-1] != channels:
    return False
  return all(d == 1 for d in dims[:-1])


def skip_forwarding_ops(tensor: tf.Tensor) -> tf.Tensor:
  """Follows Identity / ReadVariableOp / Cast producers up to a real producer.

  `op_vocabulary.walk_back` through `op_vocabulary.FORWARDING_OP_TYPES`.

  Args:
    tensor: a tf.Tensor.

  Returns:
    The first tensor upstream of `tensor` whose producer is not a forwarding
    op (a resource handle stops the walk: the read is returned).
  """
  return op_vocabulary.walk_back(tensor)


_VARIABLE_READ_OP_TYPES = (op_vocabulary.VARIABLE_OP_TYPES |
                           frozenset(['ReadVariableOp']))


def reads_variable(tensor: tf.Tensor) -> bool:
  """Whether a tensor is the value of a variable (maybe through Identity/Cast).

  Resource variables (ReadVariableOp), TF1 reference variables (VariableV2,
  read through Identity) and partitioned TF1 variables (a concat of the reads
  of their partitions) all count.

  Args:
    tensor: a tf.Tensor.

  Returns:
    True when the tensor is produced by reading a variable.
  """
  op = op_vocabulary.walk_back(tensor).op
  if op.type in _VARIABLE_READ_OP_TYPES:
    return True
  if op.type in op_vocabulary.CONCAT_OP_TYPES and len(op.inputs) > 2:
    values = op.inputs[:-1] if op.type == 'ConcatV2' else op.inputs[1:]
    return all(reads_variable(value) for value in values)
  return False


def holds_weights(tensor: tf.Tensor) -> bool:
  """Whether a conv or matmul operand is weights rather than an activation.

  Weights are variable reads (see `reads_variable`) or constants: a frozen
  graph's kernels, or a kernel written as `tf.ones(...)` (a Const, or a Fill
  of constants) -- the original treated every Conv2D as a weighted source.
  Placeholders and computed tensors are activations.

  Args:
    tensor: a tf.Tensor (input 1 of a conv or matmul).

  Returns:
    True for variable reads and constants, also reshaped (Keras' Conv1D
    runs a Conv2D on its kernel expanded to rank 4).
  """
  tensor = op_vocabulary.walk_back(tensor, through_reshapes=True)
  if reads_variable(tensor):
    return True
  op = tensor.op
  if op.type == 'Const':
    return True
  return op.type == 'Fill' and all(t.op.type == 'Const' for t in op.inputs)


def describe_op(op: tf.Operation) -> str:
  """Returns `'name' (Type)` for error messages."""
  return "'%s' (%s)" % (op.name, op.type)


def is_channelwise_conv(op: tf.Operation) -> bool:
  """Whether `op` is a conv with one input channel per group and as many
  groups as channels.

  Keras' `Conv2D(C, k, groups=C)` on C channels (ConvNeXt's depthwise conv)
  runs a Conv2D/Conv3D whose kernel is [..., 1, C]: output channel c reads
  input channel c only, so its channels are its input's and its cost is
  linear in them, as a depthwise conv's.

  Args:
    op: a tf.Operation.

  Returns:
    True for such a Conv2D or Conv3D with static channel counts > 1.
  """
  if op.type not in ('Conv2D', 'Conv3D') or len(op.inputs) < 2:
    return False
  channels = get_num_channels(op.inputs[0])
  kernel = op.inputs[1].shape
  return (channels is not None and channels > 1 and
          kernel.rank is not None and
          tf.compat.dimension_value(kernel[-2]) == 1 and
          tf.compat.dimension_value(kernel[-1]) == channels)
