"""Custom Keras layers as users write them, for surgery and bridge tests.

`SqueezeExcite` is a Squeeze-Excitation block written as one custom layer
with `keras.ops` inside `call()` and two Dense layers inside (issue 22):
its output channels are its input channels, scaled by a gate computed
through a bottleneck of its own. `SqueezeExciteRule` is the layer rule a
user registers for it: the channels pass through, and the inner Dense
weights follow the surviving channels (the bottleneck keeps its width).
"""

import keras
import numpy as np

from morph_net.surgery import builtin_rules
from morph_net.surgery import layer_cost
from morph_net.surgery import layer_rules

__all__ = ['SqueezeExcite', 'SqueezeExciteRule', 'register_squeeze_excite']


@keras.saving.register_keras_serializable(package='morph_net_testing')
class SqueezeExcite(keras.layers.Layer):
  """x * sigmoid(Dense(C)(relu(Dense(C // ratio)(mean over positions))),
  on images (batch, height, width, C).

  Args:
    ratio: the bottleneck is `channels // ratio` wide (at least 1) ...
    hidden: ... unless its width is given.
  """

  def __init__(self, ratio: int = 4, hidden=None, **kwargs):
    super().__init__(**kwargs)
    self.ratio = ratio
    self.hidden = hidden

  def build(self, input_shape):
    channels = int(input_shape[-1])
    hidden = self.hidden or max(1, channels // self.ratio)
    self.squeeze = keras.layers.Dense(hidden, activation='relu')
    self.excite = keras.layers.Dense(channels, activation='sigmoid')
    self.squeeze.build((None, channels))
    self.excite.build((None, hidden))

  def call(self, x):
    gate = keras.ops.mean(x, axis=(1, 2))
    gate = self.excite(self.squeeze(gate))
    return x * gate[:, None, None, :]

  def get_config(self):
    config = super().get_config()
    config['ratio'] = self.ratio
    config['hidden'] = self.hidden
    return config


class SqueezeExciteRule(builtin_rules.PassThroughRule):
  """Channels pass through; the squeeze kernel's rows and the excite
  kernel's columns and bias follow them. The rebuilt layer keeps the
  bottleneck's width (it would otherwise follow the narrower input)."""

  def clone_config(self, layer, config):
    return dict(config, hidden=int(layer.squeeze.units))

  def filter_kernels(self, layer):
    """[(excite kernel, -1)]: its columns are the output channels' filters
    (the layer-level GroupLasso family's sources, as the graph engine's
    matmul source handler finds the excite matmul grouped with the output
    through the gating multiply)."""
    return [(layer.excite.kernel, -1)]

  def costed_ops(self, call):
    """The squeeze (channels x bottleneck) and the excite (bottleneck x
    channels) kernels, 2 FLOPs and 1 weight per channel pair each (one row
    per example: the mean over positions); the bottleneck keeps its width
    (`layer_cost.Fixed`). An activation count counts both outputs (the
    default activation-count hook, `LayerRule.activation_ops`): the
    bottleneck's channels, always alive, and the excite's, the layer's
    output channels, as the graph engine counts the two traced matmuls."""
    single = layer_cost.first_input(call)
    if single is None:
      return None
    hidden = layer_cost.Fixed(int(call.layer.squeeze.units))
    return [layer_cost.CostedOp('squeeze', single[1], hidden, 2.0, 1.0,
                                False),
            layer_cost.CostedOp('excite', hidden, call.output_space, 2.0,
                                1.0, False)]

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del layer, new_shapes
    squeeze_kernel, squeeze_bias, excite_kernel, excite_bias = weights
    kept = selection.output_indices
    return [np.take(squeeze_kernel, selection.input_indices, axis=0),
            squeeze_bias, np.take(excite_kernel, kept, axis=1),
            np.take(excite_bias, kept, axis=0)]


def register_squeeze_excite(rules=None) -> None:
  """Registers `SqueezeExciteRule` for `SqueezeExcite` in `rules` (default:
  the process-wide table)."""
  if rules is None:
    layer_rules.register_layer_rule(SqueezeExcite, SqueezeExciteRule())
  else:
    rules.register(SqueezeExcite, SqueezeExciteRule())
