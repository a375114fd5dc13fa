"""The cost hook of a layer rule: a layer's arithmetic from its config.

The graph engine costs the ops a model traces to in TensorFlow. On the
other Keras 3 backends there is no graph to trace; there, each layer rule
says what arithmetic one call of its layer does (`LayerRule.costed_ops`),
as a list of `CostedOp`s: bilinear in the alive channels of an input space
and an output space (see `spaces`), with FLOPs and weights per channel pair
read from the layer's config and the static shapes of the call's Keras
tensors. The coefficients are those of the graph engine's
`cost_forms.flop_coeff` and `num_weights_coeff` for the same layer, and
`morph_net.keras.layer_regularizer` evaluates them with the graph engine's
cost algebra (`form_algebra`).

A rule that does not know its layer's arithmetic returns None, and the
layer-level engine refuses a model with such a layer when the layer has
any (`holds_arithmetic`); a layer is never silently left out of the cost.
"""

import collections
import dataclasses
import math
from typing import Sequence

import keras
import numpy as np

from morph_net import errors
from morph_net.surgery import spaces

__all__ = ['CostedOp', 'LayerCall', 'Fixed', 'holds_arithmetic', 'positions',
           'uncosted_error', 'channels_last', 'repeated', 'first_input',
           'kernel_positions', 'FLOP_OPERATIONS']

CostedOp = collections.namedtuple(
    'CostedOp', ['name', 'input_space', 'output_space', 'flops', 'weights',
                 'depthwise'])
CostedOp.__doc__ = """One multiply-add op of a layer call.

Attributes:
  name: what the op is, in messages ('kernel', 'depthwise', 'pointwise').
  input_space, output_space: the channel spaces it reads and writes.
  flops: FLOPs per (input, output) channel pair for one example (per
    output channel when `depthwise`).
  weights: weights per channel pair (per output channel when `depthwise`).
  depthwise: whether each output channel reads one input channel.
"""

@dataclasses.dataclass(frozen=True)
class Fixed(spaces.ChannelSpace):
  """`channels` channels inside a layer that no structure changes (the
  bottleneck of a Squeeze-Excitation layer): one side of a `CostedOp`,
  always alive and never regularized, as the graph engine counts an op's
  side that keeps its width inside a layer
  (`regularizable.inner_fixed_sides`). The other side of the op must be
  channels of the model."""
  channels: int

  def group_ids(self, table):
    return []

  def size(self, table):
    return self.channels

  def indices(self, table, kept):
    return np.arange(self.channels)


LayerCall = collections.namedtuple(
    'LayerCall', ['layer', 'inputs', 'outputs', 'input_spaces',
                  'output_space', 'layer_space'], defaults=(None,))
LayerCall.__doc__ = """One call of a layer in the channel model.

Attributes:
  layer: the Keras layer (or keras.ops operation).
  inputs, outputs: its input and output Keras tensors (static shapes).
  input_spaces: the channel space of each input.
  output_space: the channel space of its output.
  layer_space: the layer's own channel group when a structure sets its
    width (a MultiHeadAttention's heads, which are no tensor's channels),
    else None.
"""

# keras.ops operations (recorded by functional models) that multiply
# channels: no rule costs them yet, so the layer-level engine refuses them.
FLOP_OPERATIONS = frozenset([
    'Matmul', 'Einsum', 'Tensordot', 'Dot', 'Conv', 'DepthwiseConv',
    'SeparableConv', 'ConvTranspose', 'Inner', 'Outer', 'Vdot'])


def _builtin_flop_layers():
  layers = keras.layers
  return (layers.Dense, layers.EinsumDense, layers.MultiHeadAttention,
          layers.RNN, layers.Bidirectional, layers.SimpleRNN, layers.GRU,
          layers.LSTM)


# Built-in layers without weights that multiply activations together.
_PRODUCT_LAYERS = frozenset(['Attention', 'AdditiveAttention', 'Dot',
                             'GroupedQueryAttention', 'GroupQueryAttention'])


def holds_arithmetic(layer) -> bool:
  """Whether a layer (or keras.ops operation) multiplies channels.

  True for the built-in conv, dense, attention and recurrent layers (and
  their subclasses), the weightless products (Attention, Dot, ...), a
  wrapper (TimeDistributed) of such a layer, the keras.ops operations of
  `FLOP_OPERATIONS`, and any other layer holding a weight of rank >= 2 (a
  kernel: a custom layer, or one with inner Dense or conv layers) but an
  Embedding or a PReLU. Batch norms, activations, pooling, merges and
  reshapes hold none.
  """
  if not isinstance(layer, keras.layers.Layer):
    return type(layer).__name__ in FLOP_OPERATIONS
  if (isinstance(layer, _builtin_flop_layers()) or
      hasattr(layer, 'kernel_size') or
      any(c.__name__ in _PRODUCT_LAYERS for c in type(layer).__mro__)):
    return True
  if isinstance(layer, keras.layers.Wrapper):  # TimeDistributed ...
    return holds_arithmetic(layer.layer)
  if isinstance(layer, (keras.layers.Embedding, keras.layers.PReLU)):
    return False  # A table lookup; a per-position slope.
  return any(len(weight.shape) >= 2 for weight in layer.weights)


def positions(tensor, layer) -> int:
  """Product of the static dims [1:-1] of a channels-last Keras tensor.

  Raises:
    UnsupportedModelError: if one of them is not static.
  """
  dims = list(tensor.shape)[1:-1]
  if any(d is None for d in dims):
    raise errors.UnsupportedModelError(
        'Layer %r (%s) runs on a tensor of shape %s whose positions are not '
        'static, so its cost cannot be computed from its config. Build the '
        'model with a fixed input size (keras.Input(shape=...)).' % (
            layer.name, type(layer).__name__, tuple(tensor.shape)))
  return math.prod(int(d) for d in dims)


def uncosted_error(layer, rule, backend: str) -> errors.UnsupportedModelError:
  """The error for a layer with arithmetic that its rule does not cost."""
  return errors.UnsupportedModelError(
      'Layer %r (%s) multiplies channels, but its layer rule %s has no cost '
      'hook, so the layer-level regularizer (Keras backend %r) cannot cost '
      'it and will not leave it out silently. Give the rule a `costed_ops` '
      'method (see morph_net.surgery.layer_cost) and register it with '
      'morph_net.surgery.register_layer_rule, or use the TensorFlow backend, '
      'whose graph engine costs the traced ops.' % (
          getattr(layer, 'name', layer), type(layer).__name__,
          type(rule).__name__, backend))


def channels_last(layer) -> bool:
  """Whether a conv-like layer keeps channels on the last axis."""
  return getattr(layer, 'data_format', 'channels_last') == 'channels_last'


def repeated(space: spaces.ChannelSpace, factor: int) -> spaces.ChannelSpace:
  """`space` with each channel repeated `factor` times (a depthwise
  conv's output with depth multiplier `factor`)."""
  return space if factor == 1 else spaces.Repeat(space, factor)


def first_input(call: LayerCall):
  """(input tensor, input space) of a single-input call, or None."""
  if len(call.inputs) != 1:
    return None
  return call.inputs[0], call.input_spaces[0]


def kernel_positions(kernel_size: Sequence[int]) -> int:
  """Product of a kernel's spatial sizes."""
  return math.prod(int(k) for k in kernel_size)
