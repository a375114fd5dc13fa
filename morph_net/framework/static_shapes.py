"""Static shapes of Reshape outputs that TensorFlow's shape inference misses.

A Dense layer on a rank >= 3 input lowers to `tf.tensordot`: Reshape to
[rows, channels] -> MatMul -> Reshape back. When the batch dimension is
unknown (a model traced with `TensorSpec((None, ...))`), tensordot builds
the target shape at run time, `Pack(Prod(Gather(Shape(x), free)),
Prod(Gather(Shape(x), contracted)))`, and shape inference gives up on both
dimensions, although the channel count is static. The analysis reads
channels from static shapes, so it would lose the Dense's input channels.

`refine_reshape_shape` evaluates such a shape tensor over the known
dimensions (None where a value is only known at run time) and sets the
dimensions it proves on the Reshape's output (`Tensor.set_shape`, which only
adds facts; the graph computes the same values).
"""

import math
from typing import List, Optional

import tensorflow as tf
from tensorflow.python.framework import tensor_util

__all__ = ['partial_value', 'refine_reshape_shape']

# Bound on the ops followed from one shape tensor.
_MAX_DEPTH = 16


def _constant(tensor):
  try:
    value = tensor_util.constant_value(tensor)
  except (TypeError, ValueError):
    return None
  return value


def partial_value(tensor: tf.Tensor, depth: int = 0) -> Optional[List]:
  """The value of a 1-D int tensor, None for the entries known at run time.

  Understands constants, Shape (of a tensor of known rank), GatherV2 with
  constant indices, Pack of scalars, and Prod or Mul of such values.
  Anything else is unknown.

  Args:
    tensor: a 1-D integer tf.Tensor (a shape), or a scalar (depth > 0).
    depth: recursion depth (callers pass 0).

  Returns:
    A list of int or None per entry (a 1-element list for a scalar), or
    None if not even the length is known.
  """
  if depth > _MAX_DEPTH:
    return None
  value = _constant(tensor)
  if value is not None:
    return [int(v) for v in value.reshape(-1)]
  op = tensor.op
  if op.type == 'Shape':
    shape = op.inputs[0].shape
    return None if shape.rank is None else list(shape.as_list())
  if op.type == 'GatherV2':
    params = partial_value(op.inputs[0], depth + 1)
    indices = _constant(op.inputs[1])
    axis = _constant(op.inputs[2])
    if params is None or indices is None or axis is None or int(axis) != 0:
      return None
    return [params[int(i)] for i in indices.reshape(-1)]
  if op.type == 'Pack' and op.get_attr('axis') == 0:
    entries = [partial_value(t, depth + 1) for t in op.inputs]
    return [e[0] if e is not None and len(e) == 1 else None for e in entries]
  if op.type in ('Prod', 'Mul'):
    if op.type == 'Prod' and op.get_attr('keep_dims'):
      return None
    factors = []
    for factor_tensor in (op.inputs[:1] if op.type == 'Prod' else op.inputs):
      factor = partial_value(factor_tensor, depth + 1)
      if factor is None:
        return [None]
      factors.extend(factor)
    if op.type == 'Mul' and len(factors) != 2:
      return [None]
    return [None if None in factors else math.prod(factors)]
  if tensor.shape.rank == 1 and tensor.shape[0] is not None:
    return [None] * int(tensor.shape[0])
  return None


def refine_reshape_shape(op: tf.Operation) -> bool:
  """Sets the static dimensions of a Reshape's output its shape input proves.

  Args:
    op: a tf.Operation; only Reshape ops whose output shape has unknown
      dimensions are changed.

  Returns:
    True if the output's static shape gained a dimension.
  """
  if op.type != 'Reshape' or len(op.inputs) < 2:
    return False
  output = op.outputs[0]
  if output.shape.is_fully_defined():
    return False
  value = partial_value(op.inputs[1])
  if value is None or (output.shape.rank is not None and
                       len(value) != output.shape.rank):
    return False
  # -1 (inferred by Reshape) stays unknown here.
  refined = tf.TensorShape([None if v == -1 else v for v in value])
  if not output.shape.is_compatible_with(refined):
    return False
  merged = output.shape.merge_with(refined)
  if merged.as_list() == (output.shape.as_list()
                          if output.shape.rank is not None else None):
    return False
  output.set_shape(merged)
  return True
