"""Costs of Keras models for the tools, on the Keras bridge's trace.

`model_regularizer` and `model_cost` give the core regularizer's view of a
model (through `morph_net.keras.ModelRegularizer`); `StructureCost` gives the
cost of the model rebuilt with any structure from one trace, without
rebuilding it. Ops map to Keras layers through the variables they read
(`morph_net.keras.tracing`).
"""

from typing import Optional, Sequence

from morph_net.keras import model_regularizer as model_regularizer_lib
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import registry
from morph_net.network_regularizers import resource_function

__all__ = ['model_regularizer', 'model_cost', 'StructureCost']

def _shape_without_batch(input_shape: Optional[Sequence[int]]):
  return None if input_shape is None else tuple(input_shape)[1:]


def model_regularizer(model, regularizer_class=None, threshold=1e-3,
                      input_shape=None, **kwargs):
  """A `morph_net.keras.ModelRegularizer` on `model` (strength 0).

  Args:
    model: a built Keras model.
    regularizer_class: a network regularizer class (default
      GammaFlopsRegularizer).
    threshold: its alive threshold (gamma_threshold for Gamma*, threshold
      for GroupLasso*).
    input_shape: optional full input shape (batch first) when the model's
      is not static, e.g. (1, 64, 64, 3).
    **kwargs: other arguments of the regularizer (e.g. hardware='V100').

  Returns:
    The ModelRegularizer.
  """
  regularizer_class = (regularizer_class or
                       flop_regularizer.GammaFlopsRegularizer)
  kwargs.update(registry.threshold_kwargs(regularizer_class, threshold))
  return model_regularizer_lib.ModelRegularizer(
      model, regularizer_class, input_shape=_shape_without_batch(input_shape),
      **kwargs)


def model_cost(model, regularizer_class=None, threshold=1e-3,
               input_shape=None) -> float:
  """The regularizer's cost of `model` (dead channels removed)."""
  return float(model_regularizer(model, regularizer_class, threshold,
                                 input_shape).cost())


class StructureCost(object):
  """Cost of `model` rebuilt with a structure, without rebuilding it.

  The model is traced once; each costed op is mapped to its Keras layer and
  the regularizer's resource function is evaluated with the alive channel
  counts the structure gives that layer (0 for vanished layers). For FLOPs
  and model size this equals the core's `get_cost()` on the rebuilt model.

  Args:
    model: a built functional or Sequential Keras model.
    regularizer_class: its `resource_function` is used (default FLOPs).
    input_shape: optional full input shape (batch first).
  """

  def __init__(self, model, regularizer_class=None, input_shape=None):
    from morph_net.tools import channel_analysis  # pylint: disable=g-import-not-at-top
    from morph_net.tools import rebuild  # pylint: disable=g-import-not-at-top
    self._channel_analysis = channel_analysis
    self._rebuild = rebuild
    regularizer_class = (regularizer_class or
                         flop_regularizer.GammaFlopsRegularizer)
    self._fn = regularizer_class.resource_function
    self.channels = rebuild.analyze(model)
    self._ops = self._costed_ops(model, _shape_without_batch(input_shape))

  def _costed_ops(self, model, input_shape):
    """[(op, top-level layer name, whether the op has weights)]."""
    layers = self.channels.layers
    function = tracing.trace_model(
        model, tracing.get_input_signature(model, input_shape))
    # Nested models and layers count as the top-level layer holding them.
    placeholder_layers = tracing.map_placeholders_to_layers(
        model, function.graph, layers=layers.values())
    ops = []
    for op in function.graph.get_operations():
      if op.type not in resource_function.COSTED_OP_TYPES:
        continue
      name = (tracing.op_layer_name(op, placeholder_layers) or
              tracing.scope_layer_name(op, layers))
      if name is None or name not in self.channels.layer_out:
        continue
      ops.append((op, name, op.type in resource_function.WEIGHTED_OP_TYPES))
    return ops

  def cost(self, structure) -> float:
    """The cost of the model rebuilt with `structure`."""
    plan = self._rebuild._Plan(self.channels, structure)  # pylint: disable=protected-access
    total = 0.0
    for op, name, weighted in self._ops:
      if name in plan.vanished:
        continue
      layer = self.channels.layers[name]
      out_w = plan.width(plan.eff_out[name])
      in_spaces = plan.eff_in[name]
      in_w = plan.width(in_spaces[0]) if in_spaces else out_w
      if not weighted:
        in_w = out_w
      elif isinstance(layer, self._channel_analysis._SEPARABLE_TYPES):  # pylint: disable=protected-access
        k = int(layer.depth_multiplier)
        if op.type in resource_function.DEPTHWISE_OP_TYPES:
          out_w = in_w * k
        else:
          in_w = in_w * k
      total += float(self._fn(op, False, in_w, out_w, 0.0, 0.0))
    return total
