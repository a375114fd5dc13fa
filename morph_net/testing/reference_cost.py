"""Independent FLOP and weight counts of a Keras model, for differential tests.

These counts do not use MorphNet's analysis: FLOPs come from TensorFlow's own
per-op statistics (the `flops` statistics the TF profiler sums, registered by
TensorFlow for Conv2D, Conv3D, DepthwiseConv2dNative, MatMul and BatchMatMul)
on the model traced at batch 1, and from the layer's configuration where the
trace hides the arithmetic or TensorFlow's formula is not the exact one:

- recurrent layers (SimpleRNN, GRU, LSTM, also inside Bidirectional) run in a
  `While` loop: 2 x steps x gates x units x (inputs + units) per direction,
  gates = 1, 3, 4;
- grouped convolutions are compiled into a function call by Keras 3:
  2 x output positions x kernel size x (inputs / groups) x filters;
- transposed convolutions: 2 x input positions x kernel size x inputs x
  filters (TF's statistic for Conv2DBackpropInput divides the output size by
  the squared stride, which is exact only for 'same' padding);
- the attention products of MultiHeadAttention (einsums of two activations):
  2 x heads x query length x key length x (key_dim + value_dim);
- convolutions with a dilation rate (regular, grouped, depthwise and
  separable), which TF runs on SpaceToBatchND blocks padded to a multiple
  of the rate where the conv op cannot dilate itself (a Conv1D, every
  depthwise conv; its statistic counts the padding: a 'same' Conv1D of
  kernel 2, rate 2 on 7 steps read as 8): 2 x output positions x kernel
  size x (inputs / groups) x filters for a regular conv, 2 x output
  positions x kernel size x inputs x depth multiplier for a depthwise one
  (+ 2 x output positions x inputs x multiplier x filters for the
  pointwise part of a separable conv).

The FLOP convention is MorphNet's: a multiply-add is 2 FLOPs and only
convolution and matrix-product arithmetic counts. Weights are the kernels of
the layers (conv, depthwise, pointwise, dense, einsum-dense and recurrent
kernels; no biases, no normalization parameters), each variable once.
"""

import re
from typing import Dict, Iterable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

__all__ = ['reference_flops', 'reference_weights', 'KERNEL_NAMES']

L = keras.layers

# Op types whose 'flops' statistic TensorFlow registers and that carry the
# conv / matrix-product arithmetic of a layer.
_STATISTIC_OP_TYPES = frozenset([
    'Conv2D', 'Conv3D', 'DepthwiseConv2dNative', 'MatMul', 'BatchMatMul',
    'BatchMatMulV2', 'BatchMatMulV3'])
KERNEL_NAMES = frozenset(['kernel', 'depthwise_kernel', 'pointwise_kernel',
                          'recurrent_kernel'])
_RNN_GATES = {'SimpleRNN': 1, 'GRU': 3, 'LSTM': 4}
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_SCOPE_SUFFIX = re.compile(r'_\d+$')


def _trace_at_batch_one(model) -> tf.Graph:
  specs = [tf.TensorSpec((1,) + tuple(t.shape[1:]), t.dtype)
           for t in model.inputs]
  if len(specs) == 1:
    fn = tf.function(lambda x: model(x, training=False))
  else:
    fn = tf.function(lambda *xs: model(list(xs), training=False))
  return fn.get_concrete_function(*specs).graph


def _called_layers(model):
  """(layer, input shapes with batch) of every layer call in `model`.

  Nested functional and Sequential models are entered; a layer called twice
  (a shared layer) appears twice.
  """
  result = []
  nodes_by_depth = getattr(model, '_nodes_by_depth', None) or {}
  for depth in sorted(nodes_by_depth, reverse=True):
    for node in nodes_by_depth[depth]:
      layer = node.operation
      if node.is_input or layer is model:
        continue
      if isinstance(layer, keras.Model):
        result.extend(_called_layers(layer))
        continue
      result.append((layer, [tuple(t.shape) for t in node.input_tensors]))
  return result


def _rnn_flops(layer, input_shape) -> int:
  directions = [layer.forward_layer, layer.backward_layer] if isinstance(
      layer, L.Bidirectional) else [layer]
  total = 0
  steps, inputs = int(input_shape[1]), int(input_shape[-1])
  for rnn in directions:
    gates = _RNN_GATES[type(rnn).__name__]
    units = int(rnn.units)
    total += 2 * steps * gates * units * (inputs + units)
  return total


def _is_recurrent(layer) -> bool:
  return (isinstance(layer, L.Bidirectional) or
          type(layer).__name__ in _RNN_GATES)


_DEPTHWISE_KINDS = (L.DepthwiseConv1D, L.DepthwiseConv2D,
                    L.SeparableConv1D, L.SeparableConv2D)
# Regular convolutions (the transposed ones are not subclasses of these).
_CONV_KINDS = (L.Conv1D, L.Conv2D, L.Conv3D)
_DILATED_KINDS = _DEPTHWISE_KINDS + _CONV_KINDS


def _is_dilated(layer) -> bool:
  return (isinstance(layer, _DILATED_KINDS) and
          max(np.ravel(layer.dilation_rate)) > 1)


def _dilated_flops(layer, input_shape) -> int:
  output_shape = layer.compute_output_shape(input_shape)
  positions = int(np.prod(output_shape[1:-1]))
  if isinstance(layer, _CONV_KINDS):
    return (2 * positions * int(np.prod(layer.kernel_size)) *
            (int(input_shape[-1]) // int(layer.groups)) * int(layer.filters))
  depth = int(input_shape[-1]) * int(layer.depth_multiplier)
  total = 2 * positions * int(np.prod(layer.kernel_size)) * depth
  if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
    total += 2 * positions * depth * int(layer.filters)
  return total


def _config_flops(layer, input_shapes) -> int:
  """FLOPs of one example for the layers counted from their config.

  For MultiHeadAttention only the attention products: its projections are
  matrix products TensorFlow's statistics count.
  """
  if _is_recurrent(layer):
    return _rnn_flops(layer, input_shapes[0])
  if _is_dilated(layer):
    return _dilated_flops(layer, input_shapes[0])
  if isinstance(layer, _TRANSPOSED):
    shape = input_shapes[0]
    positions = int(np.prod(shape[1:-1]))
    return (2 * positions * int(np.prod(layer.kernel_size)) *
            int(shape[-1]) * int(layer.filters))
  if isinstance(layer, L.MultiHeadAttention):
    query, key = input_shapes[0], input_shapes[1]
    heads = int(layer.num_heads)
    key_dim = int(layer.key_dim)
    value_dim = int(layer.value_dim or layer.key_dim)
    return (2 * heads * int(query[1]) * int(key[1]) * (key_dim + value_dim))
  # Grouped convolution.
  output_shape = layer.compute_output_shape(input_shapes[0])
  positions = int(np.prod(output_shape[1:-1]))
  return (2 * positions * int(np.prod(layer.kernel_size)) *
          int(input_shapes[0][-1]) // int(layer.groups) * int(layer.filters))


def _is_config_counted(layer) -> bool:
  if isinstance(layer, (L.MultiHeadAttention,) + _TRANSPOSED):
    return True
  if _is_recurrent(layer) or _is_dilated(layer):
    return True
  return int(getattr(layer, 'groups', 1) or 1) > 1


def _scope_names(op_name: str) -> Iterable[str]:
  for part in op_name.split('/')[:-1]:
    yield part
    yield _SCOPE_SUFFIX.sub('', part)


def reference_flops(model) -> int:
  """Conv and matrix-product FLOPs of one example of `model`.

  Args:
    model: a built functional or Sequential Keras 3 model with static input
      sizes (nested models allowed).

  Returns:
    The FLOP count (a multiply-add counts 2), as an integer.
  """
  calls = [(layer, shapes) for layer, shapes in _called_layers(model)
           if _is_config_counted(layer)]
  # Recurrent layers peel one step out of their loop, for shapes: skip it
  # (and the ops of dilated convs, counted from their configs).
  recurrent_names = {layer.name for layer, _ in calls
                     if _is_recurrent(layer) or _is_dilated(layer)}
  graph = _trace_at_batch_one(model)
  total = 0
  for op in graph.get_operations():
    if op.type not in _STATISTIC_OP_TYPES:
      continue
    if any(name in recurrent_names for name in _scope_names(op.name)):
      continue
    total += int(tf_ops.get_stats_for_node_def(graph, op.node_def,
                                               'flops').value)
  for layer, shapes in calls:
    total += _config_flops(layer, shapes)
  return total


def reference_weights(model) -> int:
  """Number of kernel weights of `model` (each variable counted once)."""
  seen = set()
  total = 0
  for variable in model.weights:
    name = variable.path.rsplit('/', 1)[-1]
    if name not in KERNEL_NAMES or id(variable) in seen:
      continue
    seen.add(id(variable))
    total += int(np.prod(variable.shape))
  return total


def per_layer_weights(model) -> Dict[str, int]:
  """{variable path: kernel weights}, for debugging a mismatch."""
  return {v.path: int(np.prod(v.shape)) for v in model.weights
          if v.path.rsplit('/', 1)[-1] in KERNEL_NAMES}
