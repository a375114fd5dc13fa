"""LayerStructureCost: the cost of a rebuilt model from its layers, any backend.

The layer-level engine's `StructureCost` (`morph_net.keras.StructureCost`
on JAX and PyTorch): the cost of the model `rebuild(model, structure)`
returns, without building it. It costs the same layer calls as
`layer_regularizer.LayerRegularizer` (each layer rule's cost hook,
evaluated with the graph engine's algebra, `form_algebra`), with every
channel group at the width the rebuild plan gives it and the layers the
plan makes vanish left out. It needs no batch norm (no source), and no
TensorFlow.

    cost = StructureCost(regularizer)      # its channel model and resource
    cost({'stem': 6, 'down': 4})           # FLOPs of the rebuilt model

A fresh `LayerRegularizer` on the rebuilt model reports this cost
(tested), as the graph engine's `StructureCost` equals `get_cost()` on the
rebuilt model.
"""

from typing import List, Optional

import numpy as np

from morph_net import errors
from morph_net.keras import layer_regularizer
from morph_net.keras import structure_cost_base
from morph_net.surgery import channel_model as channel_model_lib
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import plan as plan_lib

__all__ = ['LayerStructureCost', 'resource_of', 'RESOURCES']

# What the layer-level engine can cost.
RESOURCES = ('flops', 'model_size', 'activation')


def resource_of(resource) -> str:
  """The resource ('flops' or 'model_size') a structure is costed with.

  Args:
    resource: None (FLOPs); 'flops', 'model_size' or 'activation'; a
      `LayerRegularizer` (its resource); or a regularizer class of
      `layer_regularizer.SUPPORTED_REGULARIZERS`, or its name.

  Returns:
    'flops', 'model_size' or 'activation'.

  Raises:
    MissingDependencyError: for a latency regularizer (see
      `layer_regularizer.latency_error`).
    InvalidArgumentError: for anything else (a resource function: the
      graph engine's StructureCost costs those on TensorFlow).
  """
  if resource is None:
    return 'flops'
  if isinstance(resource, layer_regularizer.LayerRegularizer):
    return resource.resource
  if isinstance(resource, str) and resource in RESOURCES:
    return resource
  name = (resource if isinstance(resource, str) else
          getattr(resource, '__name__', None))
  if isinstance(name, str) and name.endswith('LatencyRegularizer'):
    raise layer_regularizer.latency_error(name)
  if name in layer_regularizer.SUPPORTED_REGULARIZERS:
    return layer_regularizer.SUPPORTED_REGULARIZERS[name][0]
  raise errors.InvalidArgumentError(
      'Invalid value for argument `resource` of the layer-level '
      'StructureCost. Expected None, %s, a LayerRegularizer, or one of %s '
      '(a class or its name). Received: resource=%r. Other resources need '
      'the TensorFlow backend, whose graph engine StructureCost costs them.'
      % (', '.join(repr(r) for r in RESOURCES),
         ', '.join(sorted(layer_regularizer.SUPPORTED_REGULARIZERS)),
         resource))


class LayerStructureCost(structure_cost_base.StructureCostBase):
  """Cost of a Keras 3 model rebuilt with a structure, from its layers.

  Args:
    model: a built functional or Sequential Keras 3 model with static
      input shapes, or a `LayerRegularizer` on one (whose channel model is
      shared, and whose resource is the default).
    resource: what to cost, see `resource_of` (default: the regularizer's
      resource, else FLOPs).
    input_shape: not used (the layer calls' shapes are static); accepted
      for the graph engine's signature.
    layer_rules: the layer-rule table of the channel model (default: the
      global one; not used with a regularizer).

  Raises:
    InvalidArgumentError: see `resource_of`.
    UnsupportedModelError: for subclassed models, and for a layer that
      multiplies channels but whose rule has no cost hook.
  """

  def __init__(self, model, resource=None, input_shape=None,
               layer_rules: Optional[layer_rules_lib.LayerRules] = None):
    del input_shape  # Shapes come from the layer calls.
    if isinstance(model, layer_regularizer.LayerRegularizer):
      if resource is None:
        resource = model
      channels = model.channel_model
    else:
      channels = channel_model_lib.analyze(model, layer_rules)
    self.resource = resource_of(resource)
    self.channels = channels
    self._roots, self._offsets, self._total = (
        layer_regularizer.channel_layout(channels))
    self._calls = layer_regularizer.costed_calls(
        channels, self._offsets, self._total, self.resource)

  def costed_layers(self) -> List[str]:
    """Names of the layers with a costed op (each once, in call order)."""
    names = []
    for call in self._calls:
      if call.layer_name not in names:
        names.append(call.layer_name)
    return names

  def _plan_cost(self, plan: plan_lib.RebuildPlan) -> float:
    """The cost of the model rebuilt as `plan` says, in the resource's
    unit (FLOPs, weights or activations)."""
    table = self.channels.table
    alive = np.zeros([self._total], np.float32)
    for root in self._roots:
      width = plan.group_width.get(root, table.size(root))
      start = self._offsets[root]
      alive[start:start + width] = 1.0
    calls = [c for c in self._calls if c.layer_name not in plan.vanished]
    return layer_regularizer.evaluate_calls(
        calls, False, np.zeros_like(alive), alive, None)
