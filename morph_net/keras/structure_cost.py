"""StructureCost: the cost of a Keras model rebuilt with a structure.

The cost of a structure is the cost of the model `rebuild(model, structure)`
returns, computed without building it: every costed op of the traced graph
is mapped to its top-level Keras layer, the rebuild plan gives that layer's
input and output widths, and the resource function (FLOPs, weights,
latency, ...) is evaluated on the op with those widths. Recurrent layers,
whose arithmetic is in a loop, are costed from their rebuilt input width
and units (`recurrent.RecurrentCalls.structure_cost`); MultiHeadAttention
layers, whose heads are not channels of any traced tensor, from their
rebuilt number of heads (`attention.AttentionCalls.structure_cost`, for
FLOPs and model size; other resources cost their ops at the original
heads). One trace and one channel model serve any number of structures.

    cost = StructureCost(regularizer)          # shares the regularizer's trace
    cost({'conv1': 12, 'conv2': 20})           # FLOPs of the rebuilt model
"""

import inspect
from typing import Callable, List, Optional, Tuple

import tensorflow as tf

from morph_net import errors
from morph_net.keras import attention
from morph_net.keras import model_regularizer as model_regularizer_lib
from morph_net.keras import recurrent
from morph_net.keras import regularizable
from morph_net.keras import structure_cost_base
from morph_net.keras import tracing
from morph_net.network_regularizers import op_types
from morph_net.network_regularizers import resource_function as rf
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import plan as plan_lib

__all__ = ['StructureCost', 'resource_function_of']


def resource_function_of(resource) -> Callable:
  """The resource function a structure is costed with.

  Args:
    resource: None (FLOPs); a resource function of `resource_function`'s
      signature (for latency already bound to a device and batch size, e.g.
      `resource_function.latency_function_factory('V100', 8)`); a network
      regularizer instance or a `ModelRegularizer` (its resource function);
      or a network regularizer class whose resource does not depend on its
      arguments (FLOPs, model size, activation count).

  Returns:
    The resource function.

  Raises:
    InvalidArgumentError: for a latency regularizer class (its device is an
      argument, so the class alone cannot say what to cost) or an object
      with no resource function.
  """
  if resource is None:
    return rf.flop_function
  if isinstance(resource, model_regularizer_lib.ModelRegularizer):
    resource = resource.network_regularizer
  if isinstance(resource, type):
    if 'hardware' in inspect.signature(resource).parameters:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `resource`: %s costs latency on a '
          'device given to each instance, so the class alone cannot be '
          'costed. Pass the regularizer instance (or the ModelRegularizer), '
          "or resource_function.latency_function_factory('V100', "
          'batch_size).' % resource.__name__)
  function = getattr(resource, 'resource_function', None)
  if function is None and callable(resource) and not isinstance(resource,
                                                                type):
    function = resource
  if function is None:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `resource`. Expected a resource function, '
        'a network regularizer (class or instance) or a ModelRegularizer. '
        'Received: resource=%r (%s)' % (resource, type(resource).__name__))
  return function


class StructureCost(structure_cost_base.StructureCostBase):
  """Cost of a Keras model rebuilt with a structure, without rebuilding it.

  For FLOPs, model size and latency this equals the `get_cost()` of a
  regularizer on the rebuilt model (tested); only ops of layers the channel
  model knows are costed (the layers of nested models included).

  Args:
    model: a built functional or Sequential Keras model, its
      `tracing.TracedModel`, or a `ModelRegularizer` on it (whose trace is
      shared, and whose resource is the default).
    resource: what to cost, see `resource_function_of` (default: the
      ModelRegularizer's resource, else FLOPs).
    input_shape: input shape without batch, for a model whose input shape
      is not static (not used when `model` is traced already).
    layer_rules: the layer-rule table of the channel model.

  Raises:
    InvalidArgumentError: see `resource_function_of` and `TracedModel`.
    UnsupportedModelError: for subclassed models.
  """

  def __init__(self, model, resource=None, input_shape=None,
               layer_rules: Optional[layer_rules_lib.LayerRules] = None):
    if isinstance(model, model_regularizer_lib.ModelRegularizer):
      if resource is None:
        resource = model
      model = model.traced
    self.traced = (model if isinstance(model, tracing.TracedModel) else
                   tracing.TracedModel(model, input_shape))
    self.channels = channel_model.analyze(self.traced.model, layer_rules)
    self.resource_function = resource_function_of(resource)
    self._recurrent = recurrent.RecurrentCalls(self.traced)
    # Attention layers with a head group, costed from their heads when the
    # resource is (see `attention`).
    sources = set(self.channels.source_layers())
    self._attention = attention.AttentionCalls(self.traced)
    self._attention.calls = [c for c in self._attention.calls
                             if c.name in sources]
    self._attention_ops = (
        [op for c in self._attention.calls for op in c.ops]
        if self._attention.structure_cost(self.resource_function,
                                          lambda call: None) is not None
        else [])
    self._ops = self._map_costed_ops()

  def _map_costed_ops(self):
    costed = getattr(self.resource_function, 'costed_op_types',
                     op_types.COSTED_OP_TYPES)
    layers = self.channels.layers
    # Recurrent layers are costed from their widths (see `recurrent`).
    skipped = set(self._recurrent.ops()) | set(self._attention_ops)
    ops = []
    for op in self.traced.forward_ops():
      if op.type not in costed or op in skipped:
        continue
      name = (self.traced.known_layer_name(op, layers) or
              self.traced.scope_layer_name(op, layers) or
              self.traced.scope_operation_name(op))
      if name is None or name not in self.channels.layer_out:
        continue
      ops.append((op, name, op.type in op_types.WEIGHTED_OP_TYPES))
    self._fixed_sides = {
        op: regularizable.inner_fixed_sides(self.channels, name, op,
                                            self.traced)
        for op, name, _ in ops}
    return ops

  def costed_ops(self) -> List[Tuple[tf.Operation, str, bool]]:
    """[(op, top-level layer name, whether the op has weights)] costed."""
    return list(self._ops)

  def _op_widths(self, op, name, weighted, layer_widths):
    """The input and output widths `op` of layer `name` runs at."""
    in_width, out_width = layer_widths
    if weighted:
      layer = self.channels.layers[name]
      in_width, out_width = self.channels.rule(layer).op_widths(
          layer, in_width, out_width, op.type in op_types.DEPTHWISE_OP_TYPES)
    else:
      in_width = out_width
    # Channels inside a layer that takes no width keep their count.
    fixed_in, fixed_out = self._fixed_sides[op]
    return (in_width if fixed_in is None else fixed_in,
            out_width if fixed_out is None else fixed_out)

  def _plan_cost(self, plan: plan_lib.RebuildPlan) -> float:
    """The cost of the model rebuilt as `plan` says, in the resource
    function's unit (FLOPs, weights, ns ...)."""
    widths = {}
    total = 0.0
    for op, name, weighted in self._ops:
      if name in plan.vanished:
        continue
      if name not in widths:
        output = plan.output_width(name)
        first_input = plan.input_width(name)
        widths[name] = (output if first_input is None else first_input,
                        output)
      in_width, out_width = self._op_widths(op, name, weighted, widths[name])
      total += float(self.resource_function(op, False, in_width, out_width,
                                            0.0, 0.0))
    total += self._attention.structure_cost(
        self.resource_function,
        lambda call: self._attention_widths(plan, call)) or 0.0
    return total + self._recurrent.structure_cost(
        self.resource_function,
        lambda call: self._recurrent_widths(plan, call))

  def _attention_widths(self, plan, call):
    """(heads, query, key, value and output widths) of an attention layer
    call in the rebuilt model, or None if it vanished (the widths of its
    layer's first call in the channel model)."""
    if call.name in plan.vanished:
      return None
    positions = builtin_rules.attention_input_positions(call.layer)
    if positions is None:
      widths = [int(t.shape[-1]) for t in (call.query, call.key, call.value)]
      out = call.output_channels
    else:
      query, value, key = (plan.width(plan.eff_in[call.name][p])
                           for p in positions)
      widths = [query, key, value]
      out = plan.output_width(call.name)
    return (plan.widths[call.name],) + tuple(widths) + (out,)

  def _recurrent_widths(self, plan, call):
    """(input width, units or None: unchanged) of a recurrent layer call in
    the rebuilt model, or None if it vanished."""
    name = call.layer.name
    if name not in self.channels.layer_out:
      return call.input_channels, None
    if name in plan.vanished:
      return None
    copies = call.output_copies()
    units = None if copies is None else plan.output_width(name) // copies
    return plan.input_width(name), units
