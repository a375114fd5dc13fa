"""Recurrent layers of a traced Keras model: costed from config, units pruned.

Keras 3 runs SimpleRNN, GRU and LSTM (and Bidirectional wrappers of them) as
a `While` loop over TensorLists, which the graph analysis cannot cost: the
arithmetic is in the loop body. The bridge cuts each recurrent layer call out
of the analysis (its input is an extra output boundary, so no loop op is
analysed or warned about) and adds its cost from the layer config, with the
input channels following the group of the tensor that feeds it and the
units following the layer's own unit group:

  FLOPs   = sum over directions of 2 x steps x gates x U x (in + U)
  weights = sum over directions of gates x U x (in + U)

gates = 1 (SimpleRNN), 3 (GRU), 4 (LSTM); `in` is the number of alive input
channels and U the number of alive units (biases are not counted, as for
convs and dense layers). Other resources (an activation count) are not
counted for the layer, with a warning naming it; the layer-level engine
counts no activation of it either (`RecurrentRule.activation_ops`). The regularization term is MorphNet's bilinear
form of that cost, each alive count replaced by its regularization sum in
turn: C x (U x sum(r_in) + in x sum(r_U) + 2 x U x sum(r_U)) with C =
2 x steps x gates (FLOPs) or gates (weights); the U x U part (the recurrent
kernel) reads the unit group on both sides, like a conv whose input and
output are one group.

Units (`RecurrentCalls.plan_units`): under GroupLasso regularizers, unit u
of a layer is one channel group: every gate's kernel column, its recurrent
kernel column and row, its biases, in every direction of a Bidirectional
layer (Keras gives both directions one `units`, so unit u of both is one
channel; the concatenated output holds the group twice). Its regularization
is the group-lasso norm over those weights (root mean square, plus an L1
part with `l1_fraction`, as `GroupLassoRegularizer` normalizes a conv's
output channel), alive above the threshold. The layer's output op in the
trace becomes the source of that group (`UnitSourceHandler`, registered
through `op_handlers.custom_handler_scope` while the network regularizer
is built, see `RecurrentCalls.unit_sources`; the rest of the call stays
cut out), so the layer reading the output (a Dense, a Conv1D, another
recurrent layer) sees the alive units as its input channels, and
`alive_counts()` lists the layer with its alive units; rebuild narrows
`units`.

Other families keep the units at full width: a unit has no batch-norm scale
of its own (a BatchNormalization after a recurrent layer scales its
output, but a unit whose scale is zero still feeds the other units through
the recurrent kernel, so removing it would change the outputs), and
probabilistic gates are not placed on recurrent outputs. One warning names
those layers, and the channels grouped with their output are not
regularized (rebuild could not narrow them). Such a layer may still vanish
in rebuild when every input dies (`vanishing`): its output op then becomes
the source of a constant, alive group (`RecurrentCalls.plan_vanishing`)
that `ModelRegularizer` masks with the layer's flag, so its readers count
its units 0 when it vanishes.
"""

import collections
import contextlib
import dataclasses
import inspect
import logging
import re
import types
from typing import Dict, List, Optional

import tensorflow as tf

from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import constant_op_regularizer
from morph_net.framework import graph_util
from morph_net.framework import minimum_alive_regularizer
from morph_net.framework import op_handler_util
from morph_net.keras import layer_regularizer
from morph_net.network_regularizers import resource_function as rf
from morph_net.network_regularizers import resource_regularizer
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import op_handlers
from morph_net.op_handlers import output_non_passthrough_op_handler
from morph_net.op_regularizers import group_lasso_regularizer
from morph_net.surgery import builtin_rules
from morph_net.surgery import plan as plan_lib

__all__ = ['RecurrentCall', 'RecurrentCalls', 'GATES', 'UnitSourceHandler',
           'unit_weights', 'layers_of_kind', 'layer_scopes', 'scope_outputs',
           'variable_tensor', 'LayerSourceSettings', 'layer_source_settings',
           'layer_source_regularizer', 'is_group_lasso']

GATES = builtin_rules.RECURRENT_GATES

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
  return builtin_rules.recurrent_directions(layer)


def variable_tensor(graph: tf.Graph, variable) -> Optional[tf.Tensor]:
  """A float tensor of `graph` reading the captured `variable`, or None."""
  handles = {id(h) for h in _variable_handles(variable)}
  for external, internal in graph.captures:
    if id(external) not in handles:
      continue
    for consumer in internal.consumers():
      if consumer.type == 'ReadVariableOp':
        return consumer.outputs[0]
    with graph.as_default():
      return tf.raw_ops.ReadVariableOp(resource=internal,
                                       dtype=variable.dtype)
  return None


def _variable_handles(variable):
  from morph_net.keras import tracing  # pylint: disable=g-import-not-at-top
  return tracing._variable_handles(variable)  # pylint: disable=protected-access


def unit_weights(layer, read) -> Optional[tf.Tensor]:
  """The weights of each unit of a recurrent layer, one column per unit.

  Column u holds, for every direction, every gate's kernel column of unit
  u, its recurrent-kernel columns, its recurrent-kernel row (without the
  entries already in its columns) and its biases: the weights that die
  with the unit (`layer_regularizer.recurrent_unit_weights`, the one
  layout both engines use, on the tensors `read` gives).

  Args:
    layer: a SimpleRNN, GRU or LSTM, or a Bidirectional wrapper of them.
    read: maps a Keras variable to a tensor of its value (or None).

  Returns:
    A [weights per unit, units] float32 tensor, or None for another layer
    or a variable that cannot be read.
  """
  if builtin_rules.recurrent_units(layer) is None:
    return None
  return layer_regularizer.recurrent_unit_weights(layer, read)


class UnitSourceHandler(
    output_non_passthrough_op_handler.OutputNonPassthroughOpHandler):
  """The op handler of one op type, making given ops unit sources.

  The output op of a recurrent layer call (a Transpose, StridedSlice,
  ConcatV2 ... in the trace) starts a new channel group whose source is
  the layer's units; every other op of the type goes to `inner`.

  Args:
    inner: the registry's handler of the op type.
    sources: {op: callable(op_slice) -> OpRegularizer}.
  """

  def __init__(self, inner, sources):
    self._op_handler = inner  # The name OpHandlerDecorator gives it.
    self._sources = sources

  @property
  def is_source_op(self):
    return True

  @property
  def is_passthrough(self):
    return self._op_handler.is_passthrough

  def is_source(self, op):
    if op in self._sources:
      return True
    is_source = getattr(self._op_handler, 'is_source', None)
    return (self._op_handler.is_source_op if is_source is None else
            is_source(op))

  def assign_grouping(self, op, op_reg_manager):
    if op not in self._sources:
      return self._op_handler.assign_grouping(op, op_reg_manager)
    handler_steps.make_sources(op, op_reg_manager)
    return super().assign_grouping(op, op_reg_manager)

  def create_regularizer(self, op_slice):
    if op_slice.op not in self._sources:
      return self._op_handler.create_regularizer(op_slice)
    return self._sources[op_slice.op](op_slice)

  def get_output_channel_range(self, op, index):
    get_range = getattr(self._op_handler, 'get_output_channel_range', None)
    if op not in self._sources and get_range is not None:
      return get_range(op, index)
    size = graph_util.get_num_channels(op.outputs[index])
    return (0, size) if size == op_handler_util.get_op_size(op) else None


@dataclasses.dataclass
class RecurrentCall:
  """One call of a recurrent layer in the trace.

  Attributes:
    layer: the Keras layer.
    input_tensor: the graph tensor it reads (batch, steps, channels).
    output_ops: the ops of its scope whose outputs are used outside it.
    ops: every op of its scope.
    unit_ops: the output ops that become sources of its unit group (empty
      while its units keep their width, see `RecurrentCalls.plan_units`).
    constant_ops: the output ops of a call keeping its units that become
      sources of a constant, alive group, so that the layer's readers
      count its units dead when it vanishes (see
      `RecurrentCalls.plan_vanishing`).
  """
  layer: object
  input_tensor: tf.Tensor
  output_ops: List[tf.Operation]
  ops: List[tf.Operation]
  unit_ops: List[tf.Operation] = dataclasses.field(default_factory=list)
  constant_ops: List[tf.Operation] = dataclasses.field(default_factory=list)

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

  def gates(self) -> List[int]:
    return [GATES.get(type(rnn).__name__, 0) for rnn in _directions(self.layer)]

  def output_copies(self) -> Optional[int]:
    """How many times every output op holds the units (1, or 2 for a
    Bidirectional concatenation), or None if they do not all."""
    units = builtin_rules.recurrent_units(self.layer)
    if units is None or not self.output_ops:
      return None
    copies = set()
    for op in self.output_ops:
      if not op.outputs or op.outputs[0].shape.rank is None or (
          op.outputs[0].shape.rank < 2):
        return None
      copies.add({units: 1, 2 * units: 2}.get(
          tf.compat.dimension_value(op.outputs[0].shape[-1])))
    if len(copies) != 1 or None in copies:
      return None
    return copies.pop()


def _scope_of(op_name: str, names) -> Optional[tuple]:
  """(scope prefix, layer name) of the first scope of `op_name` that is the
  scope of a layer in `names`, or None."""
  parts = op_name.split('/')
  for i, part in enumerate(parts[:-1]):
    for name in (part, _SCOPE_SUFFIX.sub('', part)):
      if name in names:
        return '/'.join(parts[:i + 1]), name
  return None


def _l1_fraction(regularizer_class, regularizer_kwargs) -> float:
  if 'l1_fraction' in regularizer_kwargs:
    return float(regularizer_kwargs['l1_fraction'])
  try:
    default = inspect.signature(regularizer_class).parameters.get(
        'l1_fraction')
  except (TypeError, ValueError):
    default = None
  if default is None or default.default is inspect.Parameter.empty:
    return 0.0
  return float(default.default)


def keep_layers(traced, excluded, layers: Dict[str, str], channels):
  """`excluded` extended by `layers` that keep their width.

  Args:
    traced: the `TracedModel`.
    excluded: the model's `regularizable.ExcludedOps` so far.
    layers: {layer name: why it keeps its width}, including the layers of
      `excluded`.
    channels: surgery's channel model of the model.

  Returns:
    A `regularizable.ExcludedOps` whose op names add the forward ops of the
    new layers (those not in `excluded.layers`).
  """
  from morph_net.keras import regularizable  # pylint: disable=g-import-not-at-top
  op_names = list(excluded.op_names)
  for op in traced.forward_ops():
    name = traced.known_layer_name(op, channels.layers)
    if name is not None and name in layers and name not in excluded.layers:
      op_names.append(op.name)
  return regularizable.ExcludedOps(op_names, layers, excluded.warned,
                                   channels)


def layers_of_kind(traced, is_kind) -> Dict[str, object]:
  """{name: layer} of the model's layers, nested ones included, for which
  `is_kind(layer)` holds (the layers a layer-level source may prune)."""
  return {l.name: l for l in traced.model._flatten_layers(  # pylint: disable=protected-access
      include_self=False, recursive=True) if is_kind(l)}


def layer_scopes(traced, layers) -> Dict[tuple, List[tf.Operation]]:
  """{(scope prefix, layer name): forward ops of the scope} of the calls of
  the layers `layers` ({name: layer}) in the trace (one entry per call)."""
  scopes: Dict[tuple, List[tf.Operation]] = {}
  for op in traced.forward_ops():
    scope = _scope_of(op.name, layers)
    if scope is not None:
      scopes.setdefault(scope, []).append(op)
  return scopes


def scope_outputs(ops, model_outputs, forward) -> List[tf.Operation]:
  """The ops of one layer call (`ops`) whose float values are read by ops
  of the forward pass `forward` outside the call, or are model outputs
  (not the variable handles a shared layer's first call captured, which
  its other calls read too, nor the ops regularizers added since)."""
  inside = set(ops)
  return [op for op in ops
          if op in model_outputs or any(
              t.dtype.is_floating and consumer not in inside and
              consumer in forward
              for t in op.outputs for consumer in t.consumers())]


def is_group_lasso(regularizer_class) -> bool:
  """Whether `regularizer_class` is a GroupLasso network regularizer."""
  return isinstance(regularizer_class, type) and issubclass(
      regularizer_class, resource_regularizer.GroupLassoRegularizer)


# What a layer-level source regularizer is made with: the alive threshold,
# the L1 part of the group norm, the minimum kept alive and the layers that
# keep it (their removal would disconnect a model output).
LayerSourceSettings = collections.namedtuple(
    'LayerSourceSettings', ['threshold', 'l1_fraction', 'minimum',
                            'connecting'])


def layer_source_settings(regularizer_class, regularizer_kwargs, channels,
                          min_channels: int) -> LayerSourceSettings:
  """The `LayerSourceSettings` of a GroupLasso regularizer on a model whose
  channel model is `channels`."""
  connecting = {n for group in plan_lib.connecting_groups(channels)
                for n in group} if min_channels >= 1 else set()
  return LayerSourceSettings(
      float(regularizer_kwargs.get('threshold', 0.0)),
      _l1_fraction(regularizer_class, regularizer_kwargs),
      int(min_channels), frozenset(connecting))


def layer_source_regularizer(weights: tf.Tensor, name: str,
                             settings: LayerSourceSettings):
  """The group-lasso OpRegularizer of a layer's own channels (units of a
  recurrent layer, heads of an attention layer).

  Args:
    weights: [weights per channel, channels]: column c holds the weights
      that die with channel c.
    name: the layer's name.
    settings: the `LayerSourceSettings`.

  Returns:
    A `GroupLassoRegularizer` over the columns (root mean square, plus an
    L1 part), wrapped in a `MinimumAliveRegularizer` for a layer of
    `settings.connecting`.
  """
  regularizer = group_lasso_regularizer.GroupLassoRegularizer(
      weight_tensor=weights, reduce_dims=[0], threshold=settings.threshold,
      l1_fraction=settings.l1_fraction)
  if name in settings.connecting:
    regularizer = minimum_alive_regularizer.MinimumAliveRegularizer(
        regularizer, settings.minimum)
  return regularizer


_TWO_COPIES_WHY = (
    'a MultiHeadAttention reads the two copies of their units that a '
    'Bidirectional concatenation outputs, and the hidden size it reads '
    'prunes one copy of a group only (the units and the attention '
    'channels would be two alive vectors for one width)')


def _read_by_attention(channels, call) -> bool:
  """Whether a MultiHeadAttention layer reads channels of `call`'s units
  (its inputs hold their group)."""
  gid = channels.group_of(call.layer.name)
  for name, layer in channels.layers.items():
    if not isinstance(channels.rule(layer), builtin_rules.AttentionRule):
      continue
    for space in channels.layer_in.get(name) or []:
      if gid in space.group_ids(channels.table):
        return True
  return False


def _constant_source(op_slice):
  """The regularizer of a constant source's slice: every channel alive."""
  return constant_op_regularizer.ConstantOpRegularizer(op_slice.slice.size)


class RecurrentCalls(object):
  """The recurrent layer calls of a traced model.

  Args:
    traced: a `tracing.TracedModel`.
  """

  def __init__(self, traced):
    self._traced = traced
    layers = layers_of_kind(traced, _is_recurrent)
    self.calls: List[RecurrentCall] = []
    self._unit_regularizers = {}  # layer name -> OpRegularizer of its units.
    self._unit_settings = None  # LayerSourceSettings under GroupLasso.
    if not layers:
      return
    scopes = layer_scopes(traced, layers)
    forward = set(traced.forward_ops())
    for (_, name), ops in scopes.items():
      call = self._call(layers[name], ops, traced.output_ops, forward)
      if call is not None:
        self.calls.append(call)

  @staticmethod
  def _call(layer, ops, model_outputs, forward) -> Optional[RecurrentCall]:
    """The call of `layer` whose scope holds `ops`; its outputs are values
    read by other ops of the forward pass `forward` (not by the ops
    regularizers added to the trace since)."""
    inside = set(ops)
    inputs, seen = [], set()
    for op in ops:
      for tensor in op.inputs:
        if (tensor.op not in inside and tensor.dtype.is_floating and
            tensor.shape.rank == 3 and tensor.ref() not in seen):
          seen.add(tensor.ref())
          inputs.append(tensor)
    outputs = scope_outputs(ops, model_outputs, forward)
    if len(inputs) != 1:
      logging.warning(
          'Recurrent layer %r (%s): found %d sequence inputs in the trace, '
          'expected 1; its cost is not counted.', layer.name,
          type(layer).__name__, len(inputs))
      return None
    return RecurrentCall(layer, inputs[0], outputs, list(ops))

  # ------------------------------------------------------------ the units.

  def plan_units(self, regularizer_class, regularizer_kwargs, excluded,
                 min_channels: int = 1):
    """Decides which calls' units are pruned, before the analysis.

    Units are pruned under GroupLasso regularizers (subclasses of
    `resource_regularizer.GroupLassoRegularizer`) for the layers surgery's
    channel model lets change width. Under other families those layers keep
    their units: one warning names them, and the ops of every layer whose
    output shares their group are added to the excluded ops.

    Args:
      regularizer_class: the network regularizer class.
      regularizer_kwargs: its arguments (threshold, l1_fraction ...).
      excluded: the `regularizable.ExcludedOps` of the model.
      min_channels: units kept alive in a layer whose removal would
        disconnect a model output (see `ModelRegularizer`).

    Returns:
      The excluded ops, extended for the layers keeping their units.
    """
    channels = excluded.channels
    if channels is None or not self.calls:
      return excluded
    candidates = []
    for call in self.calls:
      name = call.layer.name
      if (name in channels.layer_out and name in channels.source_layers()
          and name not in excluded.layers and
          call.output_copies() is not None):
        candidates.append(call)
    if not candidates:
      return excluded
    if is_group_lasso(regularizer_class):
      # Two copies of the units read by an attention layer: the hidden
      # size cannot hold them (see `_read_by_attention`); they keep their
      # units.
      kept = [c for c in candidates
              if c.output_copies() == 2 and _read_by_attention(channels, c)]
      if kept:
        excluded = self._keep_units(kept, regularizer_class, excluded,
                                    _TWO_COPIES_WHY)
      candidates = [c for c in candidates if c not in kept]
      if not candidates:
        return excluded
      self._unit_settings = layer_source_settings(
          regularizer_class, regularizer_kwargs, channels, min_channels)
      for call in candidates:
        call.unit_ops = list(call.output_ops)
      return excluded
    return self._keep_units(candidates, regularizer_class, excluded)

  def _keep_units(self, calls, regularizer_class, excluded, why=None):
    """The excluded ops extended with the groups of `calls`' units (`why`:
    the reason the warning gives, default: the family prunes no units)."""
    channels = excluded.channels
    family = getattr(regularizer_class, '__name__', regularizer_class)
    owners = {channels.group_of(call.layer.name): call.layer.name
              for call in calls}
    names = sorted(set(owners.values()))
    layers = dict(excluded.layers)
    for name, space in channels.layer_out.items():
      for gid in space.group_ids(channels.table):
        if gid not in owners:
          continue
        owner = owners[gid]
        layers.setdefault(name, (
            ('its units keep their width: %s' % why if why else
             'its units keep their width: %s regularizes no recurrent units '
             '(only GroupLasso regularizers prune them)' % family)
            if name == owner else
            'its channels are the units of recurrent layer %r, which keep '
            'their width%s' % (owner, '' if why else ' under %s' % family)))
        break
    described = ', '.join('%r (%s)' % (n, type(channels.layers[n]).__name__)
                          for n in names)
    if why:
      logging.warning(
          'Recurrent layer(s) %s keep their units and the channels grouped '
          'with their outputs keep their width: %s.', described, why)
    else:
      logging.warning(
          'Recurrent layer(s) %s: %s regularizes no recurrent units (a unit '
          'has no batch-norm scale of its own; only GroupLasso regularizers '
          'prune units), so they keep their units and the channels grouped '
          'with their outputs keep their width.', described, family)
    return keep_layers(self._traced, excluded, layers, channels)

  def _unit_regularizer(self, call):
    """The OpRegularizer of `call`'s units (one per layer), made in the
    traced graph on first use."""
    name = call.layer.name
    if name not in self._unit_regularizers:
      graph = self._traced.graph
      weights = unit_weights(call.layer,
                             lambda v: variable_tensor(graph, v))
      self._unit_regularizers[name] = layer_source_regularizer(
          weights, name, self._unit_settings)
    return self._unit_regularizers[name]

  def _source(self, call):
    """callable(op_slice) -> OpRegularizer of an output op of `call`."""
    def create(op_slice):
      units = self._unit_regularizer(call)
      copies = call.output_copies()
      whole = (units if copies == 1 else
               concat_and_slice_regularizers.ConcatRegularizer(
                   [units] * copies))
      start, size = op_slice.slice.start_index, op_slice.slice.size
      if start == 0 and size == builtin_rules.recurrent_units(
          call.layer) * copies:
        return whole
      return concat_and_slice_regularizers.SlicingReferenceRegularizer(
          lambda: whole, start, size)
    return create

  def plan_vanishing(self, names) -> None:
    """Makes the output ops of the calls keeping their units whose layer
    is in `names` (those that may vanish in rebuild) sources of a constant
    regularizer in the analysis, so that their readers' channels have a
    group the cost can count dead (`ModelRegularizer` masks it); else the
    outputs are an input boundary and their readers count every unit.

    Args:
      names: the names of the layers that may vanish
        (`vanishing.may_vanish`).
    """
    for call in self.calls:
      call.constant_ops = (list(call.output_ops) if not call.unit_ops and
                           call.layer.name in names else [])

  def constant_sources(self) -> Dict[tf.Operation, str]:
    """{output op made a constant source: its layer's name}."""
    return {op: call.layer.name for call in self.calls
            for op in call.constant_ops}

  def unit_calls(self) -> List[RecurrentCall]:
    """The calls whose units are pruned."""
    return [call for call in self.calls if call.unit_ops]

  def connecting_layers(self) -> List[str]:
    """The layers with pruned units that keep `min_channels` alive."""
    if self._unit_settings is None:
      return []
    connecting = self._unit_settings.connecting
    return sorted({call.layer.name for call in self.unit_calls()
                   if call.layer.name in connecting})

  @contextlib.contextmanager
  def unit_sources(self):
    """A scope in which the op handler registries make the output ops of
    the calls whose units are pruned unit sources (`UnitSourceHandler`,
    registered through `op_handlers.custom_handler_scope` over the
    handlers of their op types, a user's included).

    Yields:
      None.
    """
    calls = self.unit_calls()
    sources = {op: self._source(call) for call in calls
               for op in call.unit_ops}
    sources.update((op, _constant_source) for op in self.constant_sources())
    if not sources:
      yield
      return
    if self._unit_settings is not None:
      threshold, l1_fraction = self._unit_settings[:2]
      defaults = op_handlers.get_group_lasso_op_handler_dict(threshold,
                                                             l1_fraction)
    else:
      # The output ops' types (Transpose, StridedSlice, ConcatV2 ...) have
      # the handlers every family shares.
      defaults = op_handlers.get_gamma_op_handler_dict()
    handlers = {op_type: UnitSourceHandler(defaults[op_type], sources)
                for op_type in sorted({op.type for op in sources})}
    with op_handlers.custom_handler_scope(handlers):
      yield

  def input_ops(self) -> List[tf.Operation]:
    """Ops producing the recurrent layers' inputs (extra output boundary)."""
    return [call.input_tensor.op for call in self.calls]

  def ops(self) -> List[tf.Operation]:
    """Every op of the recurrent layer calls (loops included)."""
    return [op for call in self.calls for op in call.ops]

  def output_ops(self) -> List[tf.Operation]:
    """The input boundary the recurrent layers add: the output ops of the
    calls whose units keep their width, and every other op of the calls
    whose units are pruned or may vanish (their output ops are analysed,
    as sources)."""
    result = []
    for call in self.calls:
      if call.unit_ops or call.constant_ops:
        sources = set(call.unit_ops or call.constant_ops)
        result.extend(op for op in call.ops if op not in sources)
      else:
        result.extend(call.output_ops)
    return result

  # --------------------------------------------------------- cost and term.

  def _alive_input(self, manager, call):
    """(alive count, regularization vector or None) of a call's input."""
    regularizer = manager.get_regularizer(call.input_tensor.op)
    if regularizer is None:
      return tf.constant(float(call.input_channels)), None
    alive = tf.reduce_sum(tf.cast(regularizer.alive_vector, tf.float32))
    return alive, regularizer.regularization_vector

  def _units_of(self, manager, call):
    """([alive units per direction], their regularization sum): the alive
    units of a call whose units are pruned, else every unit with sum 0."""
    regularizer = (manager.get_regularizer(call.unit_ops[0])
                   if call.unit_ops else None)
    if regularizer is None:
      return [float(u) for u in call.units()], 0.0
    units = builtin_rules.recurrent_units(call.layer)
    alive = tf.reduce_sum(tf.cast(regularizer.alive_vector[:units],
                                  tf.float32))
    vector = tf.cast(regularizer.regularization_vector[:units], tf.float32)
    return [alive] * len(call.units()), tf.reduce_sum(vector)

  def unit_vectors(self, manager, read) -> Dict[str, tf.Tensor]:
    """{layer name: read(units)} of the layers whose units are pruned,
    where `units` has the `alive_vector` and `regularization_vector` of
    the layer's units (one entry per unit; one per layer)."""
    result = {}
    for call in self.unit_calls():
      name = call.layer.name
      regularizer = manager.get_regularizer(call.unit_ops[0])
      if name in result or regularizer is None:
        continue
      units = builtin_rules.recurrent_units(call.layer)
      result[name] = read(types.SimpleNamespace(
          alive_vector=regularizer.alive_vector[:units],
          regularization_vector=regularizer.regularization_vector[:units]))
    return result

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

  def _sum(self, manager, resource_function, per_call,
           vanished=None) -> tf.Tensor:
    """Sum over the calls whose cost is known and their directions of
    per_call(factor x gates, alive inputs, input regularization sum, alive
    units, unit regularization sum); a call whose layer is in `vanished`
    ({layer name: scalar bool tensor}) counts 0 where its flag is True."""
    total = tf.constant(0.0)
    vanished = vanished or {}
    for call in self.calls:
      factor = self._per_gate_unit(resource_function, call)
      if factor is None:
        continue
      alive, vector = self._alive_input(manager, call)
      input_sum = (0.0 if vector is None else
                   tf.reduce_sum(tf.cast(vector, tf.float32)))
      units, unit_sum = self._units_of(manager, call)
      parts = [per_call(float(factor * gates), alive, input_sum,
                        direction_units, unit_sum)
               for gates, direction_units in zip(call.gates(), units)]
      if call.layer.name in vanished:
        parts = [tf.where(vanished[call.layer.name], 0.0,
                          tf.cast(tf.add_n([tf.cast(p, tf.float32)
                                            for p in parts]), tf.float32))]
      for part in parts:
        total += part
    return total

  def cost(self, manager, resource_function, vanished=None) -> tf.Tensor:
    """The recurrent layers' cost (float32 scalar) in the current graph.

    Args:
      manager: the OpRegularizerManager.
      resource_function: the resource costed.
      vanished: optional {layer name: scalar bool tensor}: the calls of a
        layer whose flag is True count 0 (a layer that vanishes in
        rebuild, whose units no regularizer reads).

    Returns:
      A float32 scalar.
    """
    def per_call(factor, alive, input_sum, units, unit_sum):
      del input_sum, unit_sum
      return factor * units * (alive + units)
    return self._sum(manager, resource_function, per_call, vanished)

  def term(self, manager, resource_function) -> tf.Tensor:
    """The recurrent layers' regularization term (float32 scalar)."""
    def per_call(factor, alive, input_sum, units, unit_sum):
      return factor * (units * input_sum + alive * unit_sum +
                       2.0 * units * unit_sum)
    return self._sum(manager, resource_function, per_call)

  def structure_cost(self, resource_function, layer_widths) -> float:
    """The recurrent layers' cost in a rebuilt model.

    Args:
      resource_function: the resource costed.
      layer_widths: callable(layer name) -> (input width, units) in the
        rebuilt model, or None for a layer that vanished.

    Returns:
      The cost (the formula of the module docstring at those widths; the
      resources other than FLOPs and model size are not counted, as in the
      regularizer's cost).
    """
    total = 0.0
    for call in self.calls:
      factor = _PER_GATE_UNIT.get(resource_function)
      if factor is None or call.gate_units() is None:
        continue
      widths = layer_widths(call)
      if widths is None:
        continue
      in_width, units = widths
      for gates, original in zip(call.gates(), call.units()):
        direction_units = original if units is None else units
        total += float(factor(call.steps) * gates * direction_units *
                       (in_width + direction_units))
    return total
