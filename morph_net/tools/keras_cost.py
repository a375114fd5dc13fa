"""Costs and alive masks of Keras models through the core regularizers.

A small stand-in for the Keras bridge (`morph_net.keras.ModelRegularizer`):
the model is traced with `tf.compat.v1.wrap_function`, a network regularizer
is built on the traced graph, and the pruned function reads the live Keras
variables. Ops map back to Keras layer names through their name scopes
(Keras 3 names a Conv2D op `<model>_1/<layer>_1/convolution`).
"""

import re
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from morph_net.network_regularizers import flop_regularizer

_SCOPE_SUFFIX = re.compile(r'_\d+$')


def _input_spec(model, input_shape: Optional[Sequence[int]] = None):
  if len(model.inputs) != 1:
    raise ValueError(
        'Invalid value for argument `model`. Expected a model with one input. '
        'Received: model %r with %d inputs.' % (model.name, len(model.inputs)))
  shape = list(input_shape or model.inputs[0].shape)
  shape[0] = 1
  if any(d is None for d in shape):
    raise ValueError(
        'Model %r has an input of unknown spatial size %s: pass '
        '`input_shape`, e.g. input_shape=(1, 64, 64, 3).' %
        (model.name, tuple(model.inputs[0].shape)))
  return tf.TensorSpec(shape, model.inputs[0].dtype)


def trace(model, input_shape=None):
  """Traces `model(x, training=False)`; returns the wrapped function."""
  spec = _input_spec(model, input_shape)
  return tf.compat.v1.wrap_function(
      lambda t: model(t, training=False), [spec])


def op_layer_name(op_name: str, layer_names) -> Optional[str]:
  """Returns the name of the Keras layer that owns `op_name`, or None."""
  parts = op_name.split('/')[1:]  # Drop the model scope.
  for part in parts:
    stripped = _SCOPE_SUFFIX.sub('', part)
    if stripped in layer_names:
      return stripped
    if part in layer_names:
      return part
  return None


class TracedRegularizer(object):
  """A network regularizer on a traced Keras model, evaluated eagerly.

  Args:
    model: a built Keras model with one input.
    regularizer_class: a network regularizer class (default
      GammaFlopsRegularizer).
    threshold: gamma_threshold (Gamma*) or threshold (GroupLasso*).
    input_shape: optional full input shape when the model's is not static.
    **kwargs: passed to the regularizer.
  """

  def __init__(self, model, regularizer_class=None, threshold=1e-3,
               input_shape=None, **kwargs):
    regularizer_class = (regularizer_class or
                         flop_regularizer.GammaFlopsRegularizer)
    self.model = model
    self.function = trace(model, input_shape)
    graph = self.function.graph
    layer_names = set(layer.name for layer in model.layers)
    with graph.as_default():
      self.regularizer = regularizer_class(
          [graph.outputs[0].op], threshold, **kwargs)
      self._cost = self.regularizer.get_cost()
      manager = self.regularizer.op_regularizer_manager
      self._alive = {}
      for op in manager.ops:
        if op.type not in ('Conv2D', 'Conv3D', 'MatMul',
                           'Conv2DBackpropInput', 'Conv3DBackpropInputV2'):
          continue
        op_regularizer = manager.get_regularizer(op)
        name = op_layer_name(op.name, layer_names)
        if op_regularizer is not None and name is not None:
          self._alive[name] = op_regularizer.alive_vector
    self._cost_fn = self.function.prune(feeds=[], fetches=self._cost)
    self._alive_fn = (self.function.prune(feeds=[], fetches=self._alive)
                      if self._alive else None)

  def cost(self) -> float:
    return float(self._cost_fn())

  def alive_masks(self) -> Dict[str, np.ndarray]:
    if self._alive_fn is None:
      return {}
    return {k: np.asarray(v, bool) for k, v in self._alive_fn().items()}

  def alive_counts(self) -> Dict[str, int]:
    return {k: int(v.sum()) for k, v in self.alive_masks().items()}


def model_cost(model, regularizer_class=None, threshold=1e-3,
               input_shape=None) -> float:
  """The regularizer's cost of `model` (dead channels removed)."""
  return TracedRegularizer(model, regularizer_class, threshold,
                           input_shape).cost()


class StructureCost(object):
  """Cost of `model` rebuilt with a structure, without rebuilding it.

  The model is traced once; each costed op is mapped to its Keras layer and
  the regularizer's resource function is evaluated with the alive channel
  counts the structure gives that layer (0 for vanished layers). For FLOPs
  and model size this equals the core's `get_cost()` on the rebuilt model.

  Args:
    model: a built functional or Sequential Keras model.
    regularizer_class: its `resource_function` is used (default FLOPs).
    input_shape: optional full input shape.
  """

  def __init__(self, model, regularizer_class=None, input_shape=None):
    from morph_net.network_regularizers import resource_function  # pylint: disable=g-import-not-at-top
    from morph_net.tools import rebuild  # pylint: disable=g-import-not-at-top
    self._rebuild = rebuild
    regularizer_class = (regularizer_class or
                         flop_regularizer.GammaFlopsRegularizer)
    self._fn = regularizer_class.resource_function
    self.channels = rebuild.analyze(model)
    layer_names = set(self.channels.layers)
    function = trace(model, input_shape)
    self._ops = []
    for op in function.graph.get_operations():
      if op.type not in resource_function.COSTED_OP_TYPES:
        continue
      name = op_layer_name(op.name, layer_names)
      if name is None or name not in self.channels.layer_out:
        continue
      self._ops.append((op, name,
                        op.type in resource_function.WEIGHTED_OP_TYPES))
    self._depthwise_types = resource_function.DEPTHWISE_OP_TYPES

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
      elif isinstance(layer, self._rebuild._SEPARABLE_TYPES):  # pylint: disable=protected-access
        k = int(layer.depth_multiplier)
        if op.type in self._depthwise_types:
          out_w = in_w * k
        else:
          in_w = in_w * k
      total += float(self._fn(op, False, in_w, out_w, 0.0, 0.0))
    return total
