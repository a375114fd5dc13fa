"""FLOPs of a Keras model counted from its layers' configs and shapes alone.

A second independent count for differential tests (`reference_cost` reads
TensorFlow's op statistics of a trace; this reads nothing but each layer
call's configuration and its input and output shapes). MorphNet's
convention: a multiply-add is 2 FLOPs, and only convolution and
matrix-product arithmetic counts. Per call, with P the output positions
(the product of the spatial or step axes) and K the kernel's positions:

  Conv1D/2D/3D          2 K (Cin / groups) Cout P
  Conv*Transpose        2 K Cin Cout Pin            (Pin: input positions)
  DepthwiseConv1D/2D    2 K Cin M P                 (M: depth multiplier)
  SeparableConv1D/2D    2 K Cin M P + 2 Cin M Cout P
  Dense                 2 Cin Cout P                (P: the axes before the last)
  MultiHeadAttention    H (2 Tq dq Kd + 2 Tk dk Kd + 2 Tk dv Vd
                           + 2 Tq Tk Kd + 2 Tq Tk Vd + 2 Tq Vd dout)
  SimpleRNN/GRU/LSTM    2 T G U (Cin + U) per direction (G = 1, 3, 4 gates)
  SqueezeExcite         2 C h + 2 h C               (its two Dense layers)

Layers without such arithmetic (normalization, activations, pooling,
reshapes, merges, keras.ops nodes) count 0; any other layer with a kernel
raises, so that an unknown kind is never silently counted as free.
Nested models are entered; a layer called twice counts twice.
"""

import keras
import numpy as np

from morph_net.testing import custom_layers

__all__ = ['config_flops', 'layer_call_flops']

L = keras.layers
_GATES = {'SimpleRNN': 1, 'GRU': 3, 'LSTM': 4}
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)


def _positions(shape) -> int:
  return int(np.prod([int(d) for d in shape[1:-1]], dtype=np.int64))


def _rnn_flops(layer, input_shape) -> int:
  directions = ([layer.forward_layer, layer.backward_layer]
                if isinstance(layer, L.Bidirectional) else [layer])
  steps, cin = int(input_shape[1]), int(input_shape[-1])
  total = 0
  for rnn in directions:
    gates, units = _GATES[type(rnn).__name__], int(rnn.units)
    total += 2 * steps * gates * units * (cin + units)
  return total


def _attention_flops(layer, input_shapes, output_shape) -> int:
  query = input_shapes[0]
  value = input_shapes[1] if len(input_shapes) > 1 else query
  key = input_shapes[2] if len(input_shapes) > 2 else value
  tq, tk = int(query[1]), int(key[1])
  dq, dk, dv = int(query[-1]), int(key[-1]), int(value[-1])
  heads, kd = int(layer.num_heads), int(layer.key_dim)
  vd = int(layer.value_dim or layer.key_dim)
  dout = int(np.prod(output_shape[2:]))
  return heads * (2 * tq * dq * kd + 2 * tk * dk * kd + 2 * tk * dv * vd +
                  2 * tq * tk * kd + 2 * tq * tk * vd + 2 * tq * vd * dout)


def layer_call_flops(layer, input_shapes, output_shapes) -> int:
  """FLOPs of one call of `layer` on one example.

  Args:
    layer: a Keras layer (not a model).
    input_shapes: the shapes of the call's input tensors (batch first).
    output_shapes: the shapes of its output tensors.

  Returns:
    The FLOP count.

  Raises:
    NotImplementedError: for a layer with a kernel of an unknown kind.
  """
  shape, out = input_shapes[0], output_shapes[0]
  cin = int(shape[-1])
  if isinstance(layer, _TRANSPOSED):
    return (2 * int(np.prod(layer.kernel_size)) * cin * int(layer.filters) *
            _positions(shape))
  if isinstance(layer, _SEPARABLE):
    depth = cin * int(layer.depth_multiplier)
    return (2 * int(np.prod(layer.kernel_size)) * depth * _positions(out) +
            2 * depth * int(layer.filters) * _positions(out))
  if isinstance(layer, _DEPTHWISE):
    return (2 * int(np.prod(layer.kernel_size)) * cin *
            int(layer.depth_multiplier) * _positions(out))
  if isinstance(layer, _CONV):
    return (2 * int(np.prod(layer.kernel_size)) * (cin // int(layer.groups)) *
            int(layer.filters) * _positions(out))
  if isinstance(layer, L.Dense):
    return 2 * cin * int(layer.units) * _positions(shape)
  if isinstance(layer, L.MultiHeadAttention):
    return _attention_flops(layer, input_shapes, out)
  if isinstance(layer, L.Bidirectional) or type(layer).__name__ in _GATES:
    return _rnn_flops(layer, shape)
  if isinstance(layer, custom_layers.SqueezeExcite):
    hidden = int(layer.squeeze.units)
    return 2 * cin * hidden + 2 * hidden * cin
  if any(w.path.rsplit('/', 1)[-1] == 'kernel'
         for w in getattr(layer, 'weights', ())):
    raise NotImplementedError(
        'config_flops does not know layer %r (%s), which has a kernel.' %
        (layer.name, type(layer).__name__))
  return 0


def config_flops(model) -> int:
  """FLOPs of one example of `model`, from its layers' configs and shapes.

  Args:
    model: a built functional or Sequential Keras model (nested models
      allowed).

  Returns:
    The FLOP count.
  """
  functional = getattr(model, '_functional', None) or model
  total = 0
  for depth in sorted(functional._nodes_by_depth, reverse=True):  # pylint: disable=protected-access
    for node in functional._nodes_by_depth[depth]:  # pylint: disable=protected-access
      layer = node.operation
      if node.is_input or layer is functional:
        continue
      if isinstance(layer, keras.Model):
        total += config_flops(layer)
        continue
      total += layer_call_flops(layer,
                                [tuple(t.shape) for t in node.input_tensors],
                                [tuple(t.shape) for t in node.outputs])
  return total
