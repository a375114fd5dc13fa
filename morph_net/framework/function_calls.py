"""Function calls whose body is one conv or matmul, read through the call.

Keras 3 compiles some layers into a function of their own, called from the
model's graph by a `StatefulPartitionedCall` / `PartitionedCall` op: a
grouped Conv (`_conv_xla`, jit-compiled) and some depthwise convs. The
arithmetic and the kernel are inside the function's body (a FuncGraph in
the calling graph's function library); the call op only has the activation,
the kernel's resource handle and the result as inputs and outputs.

`called_op(call)` reads the body: when it holds exactly one op with weights
(a conv, transposed conv, depthwise conv or matmul) whose activation and
kernel come straight from the call's inputs and whose result is one of the
call's outputs (through Identity ops), it returns that op with the matching
tensors of the calling graph. Handlers and costs then treat the call like
that op. Bodies of other shapes are not read (`body_has_weighted_ops` says
whether the call hides arithmetic, so it can be reported).
"""

import collections
from typing import Optional

import tensorflow as tf

from morph_net.framework import op_vocabulary

__all__ = ['CALL_OP_TYPES', 'WEIGHTED_BODY_OP_TYPES', 'CalledOp',
           'function_body', 'called_op', 'body_has_weighted_ops']

CALL_OP_TYPES = op_vocabulary.CALL_OP_TYPES
# Op types a body may hold for the call to be read as that op.
WEIGHTED_BODY_OP_TYPES = (
    op_vocabulary.CONV_OP_TYPES | op_vocabulary.DEPTHWISE_OP_TYPES |
    op_vocabulary.MATMUL_OP_TYPES | op_vocabulary.CONV_TRANSPOSE_OP_TYPES)
_ACTIVATION_INDEX = {'Conv2DBackpropInput': 2, 'Conv3DBackpropInputV2': 2}
_KERNEL_INDEX = {'Conv2DBackpropInput': 1, 'Conv3DBackpropInputV2': 1}

CalledOp = collections.namedtuple(
    'CalledOp', ['op', 'activation', 'weights', 'output'])
CalledOp.__doc__ = """The op a function call runs, seen from the calling graph.

Attributes:
  op: the op with weights in the function's body (its shapes and attributes
    are those of the call).
  activation: the call's input tensor that is the op's activation.
  weights: the call's input that holds the kernel: a resource handle (the
    body reads the variable) or the kernel's value.
  output: the call's output tensor that is the op's result.
"""


def function_body(op: tf.Operation, attr: str = 'f') -> Optional[tf.Graph]:
  """The FuncGraph an op runs, or None (no such function attribute).

  Args:
    op: a tf.Operation: a call, or a functional loop (attr 'body').
    attr: the name of the op's function attribute.

  Returns:
    The function's graph, from the calling graph's function library.
  """
  if attr == 'f' and op.type not in CALL_OP_TYPES:
    return None
  try:
    name = op.get_attr(attr).name
  except ValueError:
    return None
  # The library lookup has no public API on a graph; both TF1 graphs and
  # FuncGraphs answer it.
  function = op.graph._get_function(name)  # pylint: disable=protected-access
  return getattr(function, 'graph', None)


def body_has_weighted_ops(op: tf.Operation, attr: str = 'f') -> bool:
  """Whether a function an op runs holds ops with weights (convs, matmuls).

  Args:
    op: a tf.Operation.
    attr: the name of its function attribute ('body' for a While loop).

  Returns:
    True if the function's graph has a conv or matmul.
  """
  body = function_body(op, attr)
  return body is not None and any(
      o.type in WEIGHTED_BODY_OP_TYPES for o in body.get_operations())


# Rank changes of a Conv1D's lowering (ExpandDims before a Conv2D, Squeeze
# after it), which keep the channels on the last axis.
_RANK_OP_TYPES = frozenset(['ExpandDims', 'Squeeze'])


def _keeps_channels(tensor) -> bool:
  """Whether `tensor` is a rank change keeping its input's last axis."""
  op = tensor.op
  if op.type not in _RANK_OP_TYPES:
    return False
  before, after = op.inputs[0].shape, tensor.shape
  if before.rank is None or after.rank is None or not before.rank:
    return False
  return (after.rank and tf.compat.dimension_value(after[-1]) ==
          tf.compat.dimension_value(before[-1]))


# A dilated conv's lowering (`tf.nn.convolution` with a rate): the conv runs
# on SpaceToBatchND blocks, put back by BatchToSpaceND; both keep the
# channels on the last axis (input 0 holds the activation).
_BLOCK_OP_TYPES = frozenset(['SpaceToBatchND', 'BatchToSpaceND'])


def _skip(tensor):
  """Through forwarding ops, the rank changes that keep the channels and a
  dilated conv's space-to-batch blocks."""
  for _ in range(op_vocabulary.MAX_WALK_STEPS):
    tensor = op_vocabulary.walk_back(tensor, through_reshapes=True,
                                     reshape_filter=_keeps_channels)
    if tensor.op.type not in _BLOCK_OP_TYPES:
      break
    tensor = tensor.op.inputs[0]
  return tensor


def _outer_input(op, body, tensor):
  """The call's input feeding body placeholder `tensor`, or None."""
  for index, placeholder in enumerate(body.inputs):
    if placeholder is tensor and index < len(op.inputs):
      return op.inputs[index]
  return None


def _weights_source(tensor):
  """The body tensor a kernel input is read from (a placeholder), or None."""
  tensor = _skip(tensor)
  if tensor.op.type == 'ReadVariableOp':
    tensor = tensor.op.inputs[0]
  return tensor if tensor.op.type == 'Placeholder' else None


def called_op(op: tf.Operation) -> Optional[CalledOp]:
  """The conv or matmul a call op runs, if its body is just that op.

  The op's activation, kernel and result may pass rank changes that keep
  the channels last (a grouped Conv1D runs as ExpandDims, Conv2D,
  Squeeze) and a dilated conv's SpaceToBatchND and BatchToSpaceND (its
  result is then the call's output at the layer's positions).

  Args:
    op: a tf.Operation (anything but a call op gives None).

  Returns:
    A CalledOp, or None when `op` is not a call, the body holds no op with
    weights or several, or its inputs or result do not map to the call's.
  """
  body = function_body(op)
  if body is None:
    return None
  weighted = [o for o in body.get_operations()
              if o.type in WEIGHTED_BODY_OP_TYPES]
  if len(weighted) != 1:
    return None
  inner = weighted[0]
  activation = _skip(inner.inputs[_ACTIVATION_INDEX.get(inner.type, 0)])
  weights = _weights_source(inner.inputs[_KERNEL_INDEX.get(inner.type, 1)])
  outer_activation = (_outer_input(op, body, activation)
                      if activation.op.type == 'Placeholder' else None)
  outer_weights = (_outer_input(op, body, weights)
                   if weights is not None else None)
  output = None
  for index, result in enumerate(body.outputs):
    if (index < len(op.outputs) and
        _skip(result) is inner.outputs[0]):
      output = op.outputs[index]
      break
  if outer_activation is None or outer_weights is None or output is None:
    return None
  return CalledOp(inner, outer_activation, outer_weights, output)
