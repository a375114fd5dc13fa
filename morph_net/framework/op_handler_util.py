"""Helpers shared by op handlers, the manager and the cost calculator.

Channels are the last dimension of a tensor (NHWC layout), which is what Keras
and `tf.compat.v1.layers` produce on CPU and what the handlers assume.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

# Ops that only forward a value; handlers look through them to find variables.
_FORWARDING_OP_TYPES = frozenset(
    ['Identity', 'ReadVariableOp', 'Cast', 'Enter', 'Snapshot'])
# Ops that hold or feed a variable's value.
_VARIABLE_OP_TYPES = frozenset(
    ['VarHandleOp', 'VariableV2', 'Variable', 'Placeholder', 'Const',
     '_Arg'])


def get_num_channels(tensor: tf.Tensor) -> Optional[int]:
  """Returns the static size of the last dimension, or None if unknown.

  Args:
    tensor: a tf.Tensor.

  Returns:
    The channel count, or None if the rank or the last dimension is unknown,
    or the tensor is a scalar.
  """
  shape = tensor.shape
  if shape.rank is None or shape.rank == 0:
    return None
  dim = shape[-1]
  return int(dim) if dim is not None else None


def get_constant_value(tensor: tf.Tensor):
  """Returns the value of a constant tensor as numpy, or None if not constant."""
  try:
    value = tensor_util.constant_value(tensor)
  except (TypeError, ValueError):
    return None
  return None if value is None else np.asarray(value)


def normalize_axis(axis, rank: Optional[int]) -> Optional[int]:
  """Returns a non-negative axis, or None if it cannot be resolved."""
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


def skip_forwarding_ops(tensor: tf.Tensor) -> tf.Tensor:
  """Follows Identity / ReadVariableOp / Cast producers up to a real producer."""
  seen = 0
  while tensor.op.type in _FORWARDING_OP_TYPES and tensor.op.inputs:
    inner = tensor.op.inputs[0]
    if inner.dtype == tf.resource:
      break
    tensor = inner
    seen += 1
    if seen > 64:
      break
  return tensor


def reads_variable(tensor: tf.Tensor) -> bool:
  """Whether a tensor is the value of a variable (maybe through Identity/Cast).

  Args:
    tensor: a tf.Tensor.

  Returns:
    True when the tensor is produced by reading a resource variable, by a
    reference variable, or by a placeholder of a captured variable value.
  """
  seen = 0
  while True:
    op = tensor.op
    if op.type == 'ReadVariableOp':
      return True
    if op.type in ('VariableV2', 'Variable', 'VarHandleOp'):
      return True
    if op.type in _FORWARDING_OP_TYPES and op.inputs:
      tensor = op.inputs[0]
      seen += 1
      if seen > 64:
        return False
      continue
    return False


def describe_op(op: tf.Operation) -> str:
  """Returns `'name' (Type)` for error messages."""
  return "'%s' (%s)" % (op.name, op.type)
