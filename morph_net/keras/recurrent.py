"""Recurrent layers of a traced Keras model, costed from their config.

Keras 3 runs SimpleRNN, GRU and LSTM (and Bidirectional wrappers of them) as
a `While` loop over TensorLists, which the graph analysis cannot cost: the
arithmetic is in the loop body. The bridge cuts each recurrent layer call out
of the analysis (its input is an extra output boundary, its outputs extra
input boundaries, so no loop op is analysed or warned about) and adds its
cost from the layer config, with the input channels following the group of
the tensor that feeds it:

  FLOPs   = sum over directions of 2 x steps x gates x units x (in + units)
  weights = sum over directions of gates x units x (in + units)

gates = 1 (SimpleRNN), 3 (GRU), 4 (LSTM); `in` is the number of alive input
channels. The units keep their width (rebuild does not change them), so the
regularization term is C x units x sum(r_in) with C = 2 x steps x gates
(FLOPs) or gates (weights), as MorphNet's bilinear cost gives for an op
whose output channels are all alive.
"""

import dataclasses
import logging
import re
from typing import Dict, List, Optional

import tensorflow as tf

from morph_net.network_regularizers import resource_function as rf

__all__ = ['RecurrentCall', 'RecurrentCalls', 'GATES']

GATES = {'SimpleRNN': 1, 'GRU': 3, 'LSTM': 4}

_SCOPE_SUFFIX = re.compile(r'_\d+$')  # Keras uniquifies scopes: lstm_1.

# Cost per (alive input channel or unit) x unit, per gate, per direction:
# a function of the number of steps, for each resource costed.
_PER_GATE_UNIT = {
    rf.flop_function: lambda steps: 2 * steps,
    rf.model_size_function: lambda steps: 1,
}


def _is_recurrent(layer) -> bool:
  names = {c.__name__ for c in type(layer).__mro__}
  return 'RNN' in names or 'Bidirectional' in names


def _directions(layer) -> List:
  if hasattr(layer, 'forward_layer'):
    return [layer.forward_layer, layer.backward_layer]
  return [layer]


@dataclasses.dataclass
class RecurrentCall:
  """One call of a recurrent layer in the trace.

  Attributes:
    layer: the Keras layer.
    input_tensor: the graph tensor it reads (batch, steps, channels).
    output_ops: the ops of its scope whose outputs are used outside it.
    ops: every op of its scope.
  """
  layer: object
  input_tensor: tf.Tensor
  output_ops: List[tf.Operation]
  ops: List[tf.Operation]

  @property
  def steps(self) -> int:
    return int(self.input_tensor.shape[1])

  @property
  def input_channels(self) -> int:
    return int(self.input_tensor.shape[-1])

  def gate_units(self) -> Optional[List[int]]:
    """[gates x units] per direction, or None for an unknown cell."""
    result = []
    for rnn in _directions(self.layer):
      gates = GATES.get(type(rnn).__name__)
      if gates is None:
        return None
      result.append(gates * int(rnn.units))
    return result

  def units(self) -> List[int]:
    return [int(rnn.units) for rnn in _directions(self.layer)]


def _scope_of(op_name: str, names) -> Optional[tuple]:
  """(scope prefix, layer name) of the first scope of `op_name` that is the
  scope of a layer in `names`, or None."""
  parts = op_name.split('/')
  for i, part in enumerate(parts[:-1]):
    for name in (part, _SCOPE_SUFFIX.sub('', part)):
      if name in names:
        return '/'.join(parts[:i + 1]), name
  return None


class RecurrentCalls(object):
  """The recurrent layer calls of a traced model.

  Args:
    traced: a `tracing.TracedModel`.
  """

  def __init__(self, traced):
    layers = {l.name: l for l in traced.model._flatten_layers(  # pylint: disable=protected-access
        include_self=False, recursive=True) if _is_recurrent(l)}
    self.calls: List[RecurrentCall] = []
    if not layers:
      return
    scopes: Dict[tuple, List[tf.Operation]] = {}
    for op in traced.forward_ops():
      scope = _scope_of(op.name, layers)
      if scope is not None:
        scopes.setdefault(scope, []).append(op)
    for (_, name), ops in scopes.items():
      call = self._call(layers[name], ops, traced.output_ops)
      if call is not None:
        self.calls.append(call)

  @staticmethod
  def _call(layer, ops, model_outputs) -> Optional[RecurrentCall]:
    inside = set(ops)
    inputs, seen = [], set()
    for op in ops:
      for tensor in op.inputs:
        if (tensor.op not in inside and tensor.dtype.is_floating and
            tensor.shape.rank == 3 and tensor.ref() not in seen):
          seen.add(tensor.ref())
          inputs.append(tensor)
    outputs = [op for op in ops
               if op in model_outputs or any(
                   consumer not in inside for t in op.outputs
                   for consumer in t.consumers())]
    if len(inputs) != 1:
      logging.warning(
          'Recurrent layer %r (%s): found %d sequence inputs in the trace, '
          'expected 1; its cost is not counted.', layer.name,
          type(layer).__name__, len(inputs))
      return None
    return RecurrentCall(layer, inputs[0], outputs, list(ops))

  def input_ops(self) -> List[tf.Operation]:
    """Ops producing the recurrent layers' inputs (extra output boundary)."""
    return [call.input_tensor.op for call in self.calls]

  def ops(self) -> List[tf.Operation]:
    """Every op of the recurrent layer calls (loops included)."""
    return [op for call in self.calls for op in call.ops]

  def output_ops(self) -> List[tf.Operation]:
    """Ops of the recurrent layers used outside them (extra input boundary)."""
    return [op for call in self.calls for op in call.output_ops]

  def _alive_input(self, manager, call):
    """(alive count, regularization vector or None) of a call's input."""
    regularizer = manager.get_regularizer(call.input_tensor.op)
    if regularizer is None:
      return tf.constant(float(call.input_channels)), None
    alive = tf.reduce_sum(tf.cast(regularizer.alive_vector, tf.float32))
    return alive, regularizer.regularization_vector

  def _per_gate_unit(self, resource_function, call):
    """Cost per input-or-unit x gate x unit, or None (warned) if unknown."""
    gate_units = call.gate_units()
    factor = _PER_GATE_UNIT.get(resource_function)
    if gate_units is None or factor is None:
      logging.warning(
          'Recurrent layer %r (%s): its %s cost is not counted (MorphNet '
          'costs FLOPs and model size of SimpleRNN, GRU and LSTM cells).',
          call.layer.name, type(call.layer).__name__,
          getattr(resource_function, '__name__', resource_function))
      return None
    return factor(call.steps)

  def _sum(self, manager, resource_function, per_call) -> tf.Tensor:
    """Sum over the calls whose cost is known of
    per_call(call, factor, alive inputs, input regularization vector)."""
    total = tf.constant(0.0)
    for call in self.calls:
      factor = self._per_gate_unit(resource_function, call)
      if factor is not None:
        total += per_call(call, factor, *self._alive_input(manager, call))
    return total

  def cost(self, manager, resource_function) -> tf.Tensor:
    """The recurrent layers' cost (float32 scalar) in the current graph."""
    def per_call(call, factor, alive, vector):
      del vector
      return sum(float(factor * gate_units) * (alive + float(units))
                 for gate_units, units in zip(call.gate_units(),
                                              call.units()))
    return self._sum(manager, resource_function, per_call)

  def term(self, manager, resource_function) -> tf.Tensor:
    """The recurrent layers' regularization term (float32 scalar)."""
    def per_call(call, factor, alive, vector):
      del alive
      if vector is None:
        return 0.0
      return float(factor * sum(call.gate_units())) * tf.reduce_sum(
          tf.cast(vector, tf.float32))
    return self._sum(manager, resource_function, per_call)
