"""LayerRegularizer: MorphNet on the layers of a Keras 3 model, any backend.

The graph engine (`model_regularizer.ModelRegularizer`) traces a model to a
TensorFlow graph and analyses its ops. This engine reads the model's layers
instead, so it runs on JAX, PyTorch and TensorFlow alike, without
TensorFlow installed:

* channel groups and spaces come from model surgery's channel model
  (`surgery.channel_model`), the same one `rebuild` uses;
* the sources of a group are the batch-norm gammas on its channels
  (Gamma family), or the output filters of the conv, Dense and EinsumDense
  kernels writing them (GroupLasso family: the group-lasso norm of each
  filter, as the graph engine's `GroupLassoRegularizer`; depthwise and
  channelwise convs are no sources); a group's regularization vector is
  their element-wise maximum (as the graph engine's
  `MaxGroupingRegularizer`), and a channel is alive when it exceeds the
  threshold; or the `LogisticSigmoidGating` layers on its channels
  (LogisticSigmoid family: each gate's inference mask or probability, as
  the graph engine reads them from the traced gate; several gates combine
  as 1 - prod(1 - r), alive if any is, as `ProbabilisticGroupingRegularizer`;
  the gate layer needs TensorFlow, so on other backends a model has none);
* each layer call's arithmetic comes from its layer rule's cost hook
  (`LayerRule.costed_ops`, see `surgery.layer_cost`), and its cost and term
  from the graph engine's own algebra (`network_regularizers.form_algebra`)
  evaluated with `keras.ops`; an activation count counts the alive output
  channels of the ops its rule's activation-count hook names
  (`LayerRule.activation_ops`: every costed op by default; none for a
  recurrent layer, whose loop the graph engine does not count either,
  with the same warning; a fixed-width side, such as a Squeeze-Excitation
  layer's bottleneck, counts its channels; a MultiHeadAttention counts the
  output channels of the ops the graph engine traces it to,
  `_attention_activation_calls`);
* groups the graph engine does not regularize are not regularized here
  either: groups that reach a model output (with `keep_output_widths`) and
  groups surgery freezes; groups whose removal would disconnect an output
  keep `min_channels` alive;
* layers vanish in cascade as `rebuild` removes them (`vanishing`, as in
  the graph engine): a group whose every width-taking layer lost all its
  inputs counts as dead, and a layer rebuild removes costs 0.

A layer that multiplies channels and whose rule has no cost hook is refused
with an `UnsupportedModelError` naming it: nothing is left out of the cost
silently. On TensorFlow, the graph engine stays the reference; the
differential test (`tests/keras/test_layer_regularizer_corpus.py`) checks
that both give the same cost, term and alive counts on the test corpus.

    regularizer = LayerRegularizer(model, 'GammaFlopsRegularizer',
                                   gamma_threshold=1e-3)
    regularizer.set_strength_relative_to_cost(1.0)
    model.compile('adam', loss=regularizer.wrap_loss(
        'sparse_categorical_crossentropy'))
    model.fit(...)
    rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)

Supported today: the Gamma, GroupLasso and LogisticSigmoid families for
FLOPs and model size, and Gamma and GroupLasso for activation counts
(`SUPPORTED_REGULARIZERS`; by class or by name: the classes themselves
import TensorFlow); conv (grouped, channelwise, transposed, separable,
depthwise, 1-3 D), Dense and recurrent layers (SimpleRNN, GRU, LSTM,
Bidirectional; their units keep their width but under GroupLasso, which
prunes each unit by the group-lasso norm of the weights that die with it),
EinsumDense over the last axis, MultiHeadAttention (costed per head; its
heads and the hidden size keep their width under Gamma and
LogisticSigmoid, as in the graph engine; under GroupLasso regularizers of
FLOPs or model size each head is pruned by the group lasso of its weights
and the hidden size by that of every weight holding a hidden channel
that rebuild keeps (the entries of alive heads and FFN units), as the
graph engine's `attention` and `hidden_size` do, on the weights
`hidden_members` finds for both; an Embedding's output is such a hidden
size too) and custom layers whose
rule has a cost hook. Other EinsumDense equations are refused; latency
regularizers raise `MissingDependencyError` (`latency_error`). The
training parts: `metrics()` (`LayerMorphNetMetric`, fed by the loss),
`rescue_term()`, `save_alive_counts`; the structure cost is
`layer_structure_cost.LayerStructureCost`.
"""

import functools
import logging
from typing import Dict, List, Optional

import keras
from keras import ops
import numpy as np

from morph_net import errors
from morph_net.framework import noisy_or as noisy_or_lib
from morph_net.keras import hidden_members
from morph_net.keras import strength as strength_lib
from morph_net.keras import vanishing as vanishing_lib
from morph_net.network_regularizers import form_algebra
from morph_net.structure import structure_files
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model as channel_model_lib
from morph_net.surgery import layer_cost
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import spaces

__all__ = ['LayerRegularizer', 'LayerMorphNetLoss', 'LayerMorphNetMetric',
           'SUPPORTED_REGULARIZERS', 'channel_layout', 'costed_calls',
           'evaluate_calls', 'latency_error', 'channel_map', 'combine_max', 'kernel_filters',
           'group_lasso_vector', 'recurrent_unit_weights', 'GATE_CLASS',
           'is_gate', 'gate_vectors']

# Regularizer class name -> (resource, name, cost_name), the names the graph
# engine's classes carry.
SUPPORTED_REGULARIZERS = {
    'GammaFlopsRegularizer': ('flops', 'GammaFlops', 'FLOPs'),
    'GammaModelSizeRegularizer': ('model_size', 'GammaModelSize',
                                  'ModelSize'),
    'GroupLassoFlopsRegularizer': ('flops', 'GroupLassoFlops', 'FLOPs'),
    'GroupLassoModelSizeRegularizer': ('model_size', 'GroupLassoModelSize',
                                       'ModelSize'),
    'LogisticSigmoidFlopsRegularizer': ('flops', 'LogisticSigmoidFlops',
                                        'FLOPs'),
    'LogisticSigmoidModelSizeRegularizer': (
        'model_size', 'LogisticSigmoidModelSize', 'ModelSize'),
    'GammaActivationRegularizer': ('activation', 'GammaActivationCount',
                                   'Activations'),
    'GroupLassoActivationRegularizer': (
        'activation', 'GroupLassoActivationCount', 'Activations'),
}

# Source family of a regularizer class name -> (required arguments,
# optional arguments with their defaults), as the graph engine's classes
# take them; the first argument, required or optional, is the alive
# threshold.
_FAMILY_ARGUMENTS = {
    'Gamma': (('gamma_threshold',), {}),
    'GroupLasso': (('threshold',), {'l1_fraction': 0.0}),
    'LogisticSigmoid': ((), {'alive_threshold': 0.1,
                             'regularize_on_mask': True,
                             'mask_as_alive_vector': True}),
}
_BOOLEAN_ARGUMENTS = ('regularize_on_mask', 'mask_as_alive_vector')


def _family(class_name: str) -> str:
  """'Gamma', 'GroupLasso' or 'LogisticSigmoid': the source family of a
  supported class."""
  for family in ('GroupLasso', 'LogisticSigmoid'):
    if class_name.startswith(family):
      return family
  return 'Gamma'


def latency_error(name: str) -> errors.MissingDependencyError:
  """The error for a latency regularizer on the layer-level engine."""
  return errors.MissingDependencyError(
      '%s needs the TensorFlow graph engine: a latency profile charges '
      'every op TensorFlow traces (convolutions, matmuls and the '
      'element-wise ops between them, by their bytes), and the layer-level '
      'regularizer (Keras backend %r) has no such per-op list, only each '
      "layer's multiply-adds. Use KERAS_BACKEND=tensorflow (with TensorFlow "
      'installed) and morph_net.keras.ModelRegularizer, or a FLOPs or '
      'model-size regularizer on this backend.' % (
          name, keras.backend.backend()))


def _regularizer_name(regularizer_class) -> str:
  name = (regularizer_class if isinstance(regularizer_class, str) else
          getattr(regularizer_class, '__name__', None))
  if isinstance(name, str) and name.endswith('LatencyRegularizer'):
    raise latency_error(name)
  if name not in SUPPORTED_REGULARIZERS:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `regularizer_class` of the layer-level '
        'regularizer (Keras backend %r). Expected one of %s (a class or its '
        'name). Received: regularizer_class=%r. Other families and resources '
        'need the TensorFlow backend, whose graph engine supports them.' % (
            keras.backend.backend(),
            ', '.join(sorted(SUPPORTED_REGULARIZERS)), regularizer_class))
  return name


def _family_arguments(class_name: str, regularizer_kwargs) -> Dict:
  """{'threshold': alive threshold, ...} from a class's keyword arguments.

  Raises:
    InvalidArgumentError: for unknown or missing arguments, a negative
      threshold, or an l1_fraction outside [0, 1].
  """
  required, optional = _FAMILY_ARGUMENTS[_family(class_name)]
  unknown = sorted(set(regularizer_kwargs) - set(required) - set(optional))
  if unknown or any(name not in regularizer_kwargs for name in required):
    takes = ['%s (required)' % name for name in required] + sorted(optional)
    raise errors.InvalidArgumentError(
        'Invalid arguments for %s in the layer-level regularizer: it takes '
        '%s. Received: %s' % (class_name, ', '.join(takes),
                              sorted(regularizer_kwargs)))
  if required:
    arguments = {'threshold': errors.check_number(
        required[0], regularizer_kwargs[required[0]])}
  else:
    arguments = _gate_arguments(regularizer_kwargs, optional)
  if 'l1_fraction' in optional:
    l1_fraction = regularizer_kwargs.get('l1_fraction',
                                         optional['l1_fraction'])
    if (isinstance(l1_fraction, bool) or
        not isinstance(l1_fraction, (int, float)) or
        not 0.0 <= l1_fraction <= 1.0):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `l1_fraction`. Expected a number in '
          '[0, 1]. Received: l1_fraction=%r' % (l1_fraction,))
    arguments['l1_fraction'] = float(l1_fraction)
  return arguments


def _gate_arguments(regularizer_kwargs, defaults) -> Dict:
  """The LogisticSigmoid family's arguments: {'threshold', 'on_mask',
  'alive_on_mask'} (see `LayerRegularizer`).

  Raises:
    InvalidArgumentError: for a negative threshold, or a flag that is not
      a bool.
  """
  values = dict(defaults, **regularizer_kwargs)
  for name in _BOOLEAN_ARGUMENTS:
    if not isinstance(values[name], (bool, np.bool_)):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `%s`. Expected True or False. '
          'Received: %s=%r' % (name, name, values[name]))
  return {'threshold': errors.check_number('alive_threshold',
                                           values['alive_threshold']),
          'on_mask': bool(values['regularize_on_mask']),
          'alive_on_mask': bool(values['mask_as_alive_vector'])}


def channel_map(space: spaces.ChannelSpace, table: spaces.GroupTable,
                offsets: Dict[int, int]) -> np.ndarray:
  """For each channel of `space`, its index in the concatenation of groups.

  Args:
    space: a channel space of the channel model.
    table: its group table.
    offsets: {group root: offset of its first channel}.

  Returns:
    An int array of the space's size.

  Raises:
    UnsupportedModelError: for a space of another kind (vanished channels).
  """
  if isinstance(space, spaces.Group):
    root = table.find(space.gid)
    return offsets[root] + np.arange(table.size(root))
  if isinstance(space, spaces.Concat):
    parts = [channel_map(p, table, offsets) for p in space.parts]
    return np.concatenate(parts) if parts else np.zeros([0], np.int64)
  if isinstance(space, spaces.Repeat):  # Channel c * k + j is c's.
    return np.repeat(channel_map(space.inner, table, offsets), space.factor)
  if isinstance(space, spaces.Flattened):  # Channel p * C + c is c's.
    return np.tile(channel_map(space.inner, table, offsets), space.factor)
  if isinstance(space, layer_cost.Fixed):  # In no group (see `_form`).
    return np.zeros([0], np.int64)
  raise errors.UnsupportedModelError(
      'The layer-level regularizer cannot map channel space %r (%s) to '
      'channel groups. Use the TensorFlow backend, whose graph engine reads '
      'the traced ops.' % (space, type(space).__name__))


def _counts(index: np.ndarray, total: int) -> np.ndarray:
  """How often each of `total` channels appears in `index` (float32)."""
  return np.bincount(index, minlength=total).astype(np.float32)


def combine_max(a, b):
  """Element-wise max whose gradient at a tie goes to `a` on every backend
  (`where(a >= b, a, b)`, as TensorFlow's maximum; see
  `form_algebra.keras_math`)."""
  return ops.where(a >= b, a, b)


_NO_SOURCE_HINTS = {
    'Gamma': 'it needs a BatchNormalization (with scale=True) on channels '
             'that rebuild can narrow. Add batch norms after the '
             'convolutions.',
    'GroupLasso': 'it needs a conv, Dense or EinsumDense layer whose '
                  'output channels rebuild can narrow and that does not '
                  'reach a model output.',
    'LogisticSigmoid': 'it needs LogisticSigmoidGating layers '
                       '(morph_net.probabilistic_gating) over the last axis '
                       'on channels that rebuild can narrow. Add a gate '
                       'after each convolution.',
}


def kernel_filters(layer):
  """(kernel variable, axis of its output channels) of a layer whose
  output filters the GroupLasso family regularizes, or None.

  Conv1D/2D/3D (grouped too) and Dense: the kernel, last axis; transposed
  convs: the kernel, axis -2; separable convs: the pointwise kernel;
  EinsumDense with a 2-D kernel: the kernel, last axis. Depthwise convs,
  channelwise convs (as many groups as channels: output channel c is
  input channel c's, as in a depthwise conv) and every other layer: None.
  """
  layers = keras.layers
  if builtin_rules._is_channelwise(layer):  # pylint: disable=protected-access
    return None
  if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
    return layer.pointwise_kernel, -1
  if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose,
                        layers.Conv3DTranspose)):
    return layer.kernel, -2
  if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D,
                        layers.Dense)):
    return layer.kernel, -1
  if isinstance(layer, layers.EinsumDense) and len(layer.kernel.shape) == 2:
    return layer.kernel, -1
  return None


def group_lasso_vector(kernel, axis: int, l1_fraction: float = 0.0):
  """Per output channel, the group-lasso norm of its filter (float32).

  (1 - l1_fraction) x sqrt(mean(w^2)) + l1_fraction x mean(|w|), the means
  over every axis but `axis`: the graph engine's `GroupLassoRegularizer`,
  in keras.ops. The square root has a zero gradient where a filter is all
  zeros (as `safe_math.safe_sqrt`).

  Args:
    kernel: a weight variable or tensor.
    axis: the axis of the output channels.
    l1_fraction: weight of the L1 part, in [0, 1].

  Returns:
    A float32 vector with one entry per output channel.
  """
  weights = ops.cast(ops.convert_to_tensor(kernel), 'float32')
  weights = ops.moveaxis(weights, axis, -1)
  reduce_axes = tuple(range(len(weights.shape) - 1))
  squares = ops.mean(ops.square(weights), axis=reduce_axes)
  positive = squares > 0
  l2 = ops.where(positive, ops.sqrt(ops.where(positive, squares, 1.0)), 0.0)
  if not l1_fraction:
    return l2
  absolutes = ops.mean(ops.abs(weights), axis=reduce_axes)
  return (1.0 - l1_fraction) * l2 + l1_fraction * absolutes


def _kept_group_lasso(weights, kept, l1_fraction: float = 0.0):
  """`group_lasso_vector` of [entries, channels] `weights` over the entries
  `kept` ([entries] float32 1/0; None: all), the means over the kept
  entries only (none kept: 0), as the graph engine's
  `hidden_size._KeptGroupLasso`."""
  if kept is None:
    return group_lasso_vector(weights, -1, l1_fraction)
  kept = ops.reshape(ops.cast(kept, 'float32'), [-1, 1])
  count = ops.maximum(ops.sum(kept), 1.0)
  squares = ops.sum(kept * ops.square(weights), axis=0) / count
  positive = squares > 0
  l2 = ops.where(positive, ops.sqrt(ops.where(positive, squares, 1.0)), 0.0)
  if not l1_fraction:
    return l2
  absolutes = ops.sum(kept * ops.abs(weights), axis=0) / count
  return (1.0 - l1_fraction) * l2 + l1_fraction * absolutes


# The gating layer, by qualified name: its module imports TensorFlow.
GATE_CLASS = ('morph_net.probabilistic_gating.activation_gating.'
              'LogisticSigmoidGating')


def is_gate(layer) -> bool:
  """Whether `layer` is a `LogisticSigmoidGating` (or a subclass)."""
  return any('%s.%s' % (c.__module__, c.__name__) == GATE_CLASS
             for c in type(layer).__mro__)


def gate_vectors(gate, regularize_on_mask: bool = True,
                 mask_as_alive_vector: bool = True):
  """(regularization vector, alive source) of a gate, float32.

  The gate's inference mask, as the graph engine reads it from the model
  traced for inference (`sampling.compute_mask` with training=False):
  hard = [log_odds > 0], p = sigmoid(log_odds); the mask is
  hard + (p - stop_gradient(p)) (the value of hard, the gradient of p), or
  hard x p with `soft_mask_for_inference`; channel 0 is forced open with
  `keep_first_channel_alive`. Each vector is the mask or p, as the graph
  engine's `ProbGatingRegularizer` picks them.

  Args:
    gate: a built LogisticSigmoidGating layer.
    regularize_on_mask: regularize the mask (else p).
    mask_as_alive_vector: threshold the mask (else p).

  Returns:
    Two float32 vectors with one entry per channel.
  """
  return _gate_vectors(gate, regularize_on_mask, mask_as_alive_vector)[:2]


def _gate_vectors(gate, regularize_on_mask: bool, mask_as_alive_vector: bool):
  """`gate_vectors` and the probability sigmoid(log-odds), float32 (a
  group of gates reads the probability for its gradient, `noisy_or`)."""
  log_odds = ops.cast(ops.convert_to_tensor(gate.log_odds), 'float32')
  probability = ops.sigmoid(log_odds)
  hard = ops.cast(log_odds > 0.0, 'float32')
  if gate.soft_mask_for_inference:
    mask = hard * probability
  else:
    mask = hard + (probability - ops.stop_gradient(probability))
  if gate.keep_first_channel_alive:
    mask = combine_max(mask, ops.one_hot(0, int(log_odds.shape[0]),
                                         dtype='float32'))
  return (mask if regularize_on_mask else probability,
          mask if mask_as_alive_vector else probability, probability)


def recurrent_unit_weights(layer, read=None):
  """The weights of each unit of a recurrent layer, one column per unit.

  Column u holds, for every direction (of a Bidirectional layer), every
  gate's kernel column of unit u, its recurrent-kernel columns, its
  recurrent-kernel row without the entries already in its columns, and its
  biases: the weights that die with the unit, in keras.ops (the graph
  engine's `recurrent.unit_weights` is this function on its traced
  graph's tensors).

  Args:
    layer: a SimpleRNN, GRU or LSTM, or a Bidirectional wrapper of them.
    read: maps a Keras variable to a tensor of its value, or None when it
      cannot be read (default: the variable's value).

  Returns:
    A float32 [weights per unit, units] tensor, or None when `read` could
    not read a variable.
  """
  units = builtin_rules.recurrent_units(layer)
  parts = []
  for rnn in builtin_rules.recurrent_directions(layer):
    gates = builtin_rules.RECURRENT_GATES[type(rnn).__name__]
    for variable in rnn.weights:
      kind = variable.path.rsplit('/', 1)[-1]
      if kind not in ('kernel', 'recurrent_kernel', 'bias'):
        continue
      value = (ops.convert_to_tensor(variable) if read is None else
               read(variable))
      if value is None:
        return None
      value = ops.cast(value, 'float32')
      parts.append(ops.reshape(value, [-1, units]))
      if kind == 'recurrent_kernel' and units > 1:
        # Row u without its own columns g * units + u (counted above).
        others = np.array([[c for c in range(gates * units)
                            if c % units != u] for u in range(units)])
        parts.append(ops.transpose(ops.take_along_axis(value, others,
                                                       axis=1)))
  return ops.concatenate(parts, axis=0)


def channel_layout(channels: channel_model_lib.ChannelModel):
  """(roots, {root: offset}, total): every channel group of a channel
  model laid out in one vector of all channels, in the order of the
  sorted group roots."""
  table = channels.table
  roots = sorted(channels.all_groups())
  offsets, total = {}, 0
  for root in roots:
    offsets[root] = total
    total += table.size(root)
  return roots, offsets, total


def costed_calls(channels: channel_model_lib.ChannelModel,
                 offsets: Dict[int, int], total: int,
                 resource: str) -> List['_CostedCall']:
  """Every costed op of every layer call of a channel model.

  Args:
    channels: the channel model.
    offsets: {channel group root: its first channel's index}, from
      `channel_layout`.
    total: the number of channels of that layout.
    resource: 'flops' (every call), 'model_size' (each layer's first
      call only: a shared kernel is counted once) or 'activation' (every
      call: the alive output channels of each op its rule's
      activation-count hook, `LayerRule.activation_ops`, counts, the
      graph engine's `activation_count_function`; the other ops are
      listed with no form, and a `layer_cost.Fixed` output counts its
      channels, always alive; a MultiHeadAttention call's count is
      `_attention_activation_calls`).

  Returns:
    A list of `_CostedCall`.

  Raises:
    UnsupportedModelError: for a layer that multiplies channels and whose
      rule has no cost hook.
  """
  calls, seen = [], set()
  sources = set(channels.source_layers())
  for layer, inputs, outputs in channels.nodes:
    if resource == 'model_size' and layer.name in seen:
      continue
    seen.add(layer.name)
    rule = channels.rule(layer)
    layer_space = None
    if layer.name in sources:
      layer_space = spaces.Group(channels.group_of(layer.name))
    call = layer_cost.LayerCall(
        layer, inputs, outputs, [channels.space[id(t)] for t in inputs],
        channels.space[id(outputs[0])], layer_space)
    costed = rule.costed_ops(call)
    if costed is None:
      raise layer_cost.uncosted_error(layer, rule, keras.backend.backend())
    if resource == 'activation' and isinstance(
        rule, builtin_rules.AttentionRule):
      calls.extend(_attention_activation_calls(call, costed, channels,
                                               offsets, total))
      continue
    counted = None
    if resource == 'activation':
      counted = _activation_ops(layer, rule, call, costed)
    for op in costed:
      fixed_outputs = 0.0
      if counted is None:
        coeff = op.flops if resource == 'flops' else op.weights
        forms = [_form(layer, op, float(coeff))]
      elif any(op is c for c in counted):
        forms = [form_algebra.Form(0.0, 0.0, 1.0, False)]
        if isinstance(op.output_space, layer_cost.Fixed):
          fixed_outputs = float(op.output_space.channels)
      else:
        forms = []
      calls.append(_CostedCall(
          layer.name, op, forms,
          _counts(channel_map(op.input_space, channels.table, offsets),
                  total),
          _counts(channel_map(op.output_space, channels.table, offsets),
                  total), fixed_outputs))
  return calls


def _activation_ops(layer, rule, call, costed) -> List:
  """The ops of `costed` whose outputs the activation count counts (the
  rule's `activation_ops`); warns when it counts none of ops that
  multiply channels (as the graph engine warns for a recurrent layer).

  Raises:
    UnsupportedModelError: for a hook returning an op not in `costed`.
  """
  counted = list(rule.activation_ops(call, costed))
  for op in counted:
    if not any(op is c for c in costed):
      raise errors.UnsupportedModelError(
          'Layer %r (%s): the activation-count hook of its layer rule %s '
          '(activation_ops) returned %r, which is not one of the ops of its '
          'cost hook (costed_ops). Return a sublist of the costed_ops it is '
          'given.' % (layer.name, type(layer).__name__, type(rule).__name__,
                      getattr(op, 'name', op)))
  if not counted and any(op.flops > 0 for op in costed):
    logging.warning(
        'Layer %r (%s): the activation count leaves it out: its layer rule '
        '%s counts the output channels of none of its ops (activation_ops), '
        'as the graph engine counts none of the ops it traces to.',
        layer.name, type(layer).__name__, type(rule).__name__)
  return counted


def _attention_activation_calls(call, costed, channels, offsets,
                                total) -> List['_CostedCall']:
  """The activation count of a MultiHeadAttention call (`costed`: its cost
  hook's ops), as the graph engine counts the ops it traces to: the
  output channels of the query and key projections (heads x key_dim
  each), of the value projection (heads x value_dim), of the scores
  (the key steps: their last axis), of the attention times the values
  (value_dim) and of the output projection (the alive output channels).

  The heads and the hidden size keep their width under activation counts
  (their count is not costed from the number of heads, see
  `_HEAD_RESOURCES`), so the heads' group is never regularized: the
  projections count their columns per head (alive heads times their
  dimension); the attention products count a fixed number, always alive
  (`_CostedCall.fixed_outputs`).
  """
  layer = call.layer
  key_dim, value_dim = float(layer.key_dim), float(layer.value_dim)
  key = builtin_rules._call_positions(layer, call.inputs)[2]  # pylint: disable=protected-access
  key_steps = float(call.inputs[key].shape[1])
  per_head = {'query': key_dim, 'key': key_dim, 'value': value_dim,
              'output': 1.0}
  calls = []
  for op in costed:
    out_counts = _counts(channel_map(op.output_space, channels.table,
                                     offsets), total)
    fixed_outputs = 0.0
    if op.name in per_head:
      form = form_algebra.Form(0.0, 0.0, per_head[op.name], False)
    else:  # The products: the scores and the attention times the values.
      form = form_algebra.Form(0.0, 0.0, 1.0, False)
      out_counts = np.zeros([total], np.float32)
      fixed_outputs = key_steps + value_dim
    calls.append(_CostedCall(
        layer.name, op, [form],
        _counts(channel_map(op.input_space, channels.table, offsets), total),
        out_counts, fixed_outputs))
  return calls


def _form(layer, op, coeff: float) -> form_algebra.Form:
  """The form of a costed op: bilinear in its input and output channels;
  linear in the other side when one side is `layer_cost.Fixed` (its
  channels count as alive, with no regularization value).

  Raises:
    UnsupportedModelError: for a depthwise op or both sides fixed.
  """
  fixed_in = isinstance(op.input_space, layer_cost.Fixed)
  fixed_out = isinstance(op.output_space, layer_cost.Fixed)
  if not (fixed_in or fixed_out):
    return form_algebra.Form(coeff, 0.0, 0.0, bool(op.depthwise))
  if op.depthwise or (fixed_in and fixed_out):
    raise errors.UnsupportedModelError(
        'Layer %r (%s): its cost hook gives op %r fixed channels on %s; the '
        'layer-level regularizer costs a fixed side only on a '
        'non-depthwise op whose other side is channels of the model. Fix '
        'the costed_ops of its layer rule.' % (
            layer.name, type(layer).__name__, op.name,
            'both sides' if fixed_in and fixed_out else 'a depthwise op'))
  if fixed_in:
    return form_algebra.Form(0.0, 0.0, coeff * op.input_space.channels,
                             False)
  return form_algebra.Form(0.0, coeff * op.output_space.channels, 0.0, False)


def evaluate_calls(calls, is_regularization: bool, reg, alive, tensor_math,
                   vanished=None):
  """The total cost (or term) of `calls` with the given vectors.

  Args:
    calls: `_CostedCall`s.
    is_regularization: the term, else the cost.
    reg: the regularization values, a float32 vector over all channels
      (a backend tensor, or a numpy array: then `tensor_math` may be None
      for a cost of numbers).
    alive: the alive indicators, a float32 vector like `reg`.
    tensor_math: `form_algebra.Math` for tensors.
    vanished: optional {layer name: scalar bool tensor}: the calls of a
      layer whose flag is True count 0 (tensor vectors only).

  Returns:
    A float32 scalar tensor, or a Python number for numpy vectors.
  """
  if not calls:
    return 0.0 if isinstance(alive, np.ndarray) else ops.zeros([], 'float32')
  in_counts = np.stack([c.in_counts for c in calls])
  out_counts = np.stack([c.out_counts for c in calls])
  if isinstance(alive, np.ndarray):
    matmul = lambda a, b: [float(v) for v in np.matmul(a, b)]
  else:
    matmul = ops.matmul
  alive_in, alive_out = matmul(in_counts, alive), matmul(out_counts, alive)
  reg_in, reg_out = matmul(in_counts, reg), matmul(out_counts, reg)
  total = None
  for i, call in enumerate(calls):
    out = alive_out[i]
    if call.fixed_outputs:
      out = out + call.fixed_outputs
    value = form_algebra.evaluate(call.forms, is_regularization,
                                  alive_in[i], out, reg_in[i],
                                  reg_out[i], tensor_math)
    if vanished and call.layer_name in vanished:
      value = ops.where(vanished[call.layer_name], 0.0,
                        ops.cast(value, 'float32'))
    total = value if total is None else total + value
  if isinstance(alive, np.ndarray):
    return float(total)
  return ops.cast(total, 'float32')


def _hidden_groups(channels) -> set:
  """The group roots of the hidden sizes the graph engine finds
  (`hidden_size.HiddenGroups`): an Embedding's output, and the inputs and
  output of a MultiHeadAttention whose heads are a group
  (`hidden_members.hidden_roots`)."""
  return set(hidden_members.hidden_roots(channels))


# Scalar bool tensors of any backend, for `vanishing.Vanishing`.
_KERAS_LOGIC = vanishing_lib.Logic(
    all_of=lambda flags: ops.all(ops.stack(flags)),
    any_of=lambda flags: ops.any(ops.stack(flags)),
    not_=ops.logical_not, true=lambda: ops.convert_to_tensor(True))


# Resources whose attention heads are costed from their number, so that
# GroupLasso regularizers prune them (`morph_net.keras.attention`).
_HEAD_RESOURCES = ('flops', 'model_size')


class _StrengthVariable(keras.Variable):
  """The strength; `on_assign` runs after every assignment.

  On JAX a compiled train step holds the strength it was traced with; the
  regularizer's `on_assign` retraces the model's compiled steps so that a
  new strength (`set_strength`, `CostTargetCallback`) takes effect at the
  next step, inside `fit` too.
  """

  on_assign = None

  def assign(self, value):
    result = super().assign(value)
    if self.on_assign is not None:
      self.on_assign()  # pylint: disable=not-callable
    return result


class _CostedCall(object):
  """One costed op of one layer call: its forms and its channel counts."""

  def __init__(self, layer_name, op, forms, in_counts, out_counts,
               fixed_outputs=0.0):
    self.layer_name = layer_name
    self.op = op
    self.forms = forms
    self.in_counts = in_counts    # [total] multiplicities of its inputs.
    self.out_counts = out_counts  # [total] multiplicities of its outputs.
    # Alive output channels besides those of `out_counts`: an activation
    # count's `layer_cost.Fixed` output (always alive, never regularized,
    # as the graph engine counts an output of no group).
    self.fixed_outputs = fixed_outputs


class LayerRegularizer(object):
  """A MorphNet regularizer computed from a Keras 3 model's layers.

  The public API is `ModelRegularizer`'s (the graph engine's): on a
  backend other than TensorFlow, `morph_net.keras.ModelRegularizer` is this
  class.

  Args:
    model: a built functional or Sequential Keras 3 model with static
      input shapes.
    regularizer_class: a class of `SUPPORTED_REGULARIZERS` or its name.
    strength: initial regularization strength (the term's multiplier).
    input_shape: not used (the layer calls' shapes are static); accepted
      for the graph engine's signature.
    keep_output_widths: do not regularize channel groups reaching a model
      output.
    min_channels: channels kept alive in every group whose removal would
      disconnect a model output (see `plan.connecting_groups`).
    layer_rules: the surgery layer-rule table (default: the global one).
    **regularizer_kwargs: Gamma family: `gamma_threshold` (required):
      channels whose |gamma| is at or below it are dead. GroupLasso
      family: `threshold` (required): channels whose filter's group-lasso
      norm is at or below it are dead; `l1_fraction` (default 0): the
      weight of the norm's L1 part. LogisticSigmoid family:
      `alive_threshold` (default 0.1): channels whose gate mask (or
      probability) is below it are dead; `regularize_on_mask` (default
      True): regularize the mask, else the probability;
      `mask_as_alive_vector` (default True): threshold the mask, else the
      probability.

  Raises:
    InvalidArgumentError: for an unsupported regularizer, unknown or
      missing arguments, a negative strength or threshold, an
      l1_fraction outside [0, 1], or (GroupLasso, a pruned hidden size) an
      unknown `hidden_size.GROUPING` or a `hidden_size.GRADIENT_SCALE` that
      is not a finite number > 0.
    MissingDependencyError: for a latency regularizer (the graph engine's
      traced ops are needed, see `latency_error`).
    NoSourceOpsError: when no group has a source to regularize (a
      batch-norm gamma; a conv or dense kernel; a gate).
    UnsupportedModelError: for subclassed models, for a layer that
      multiplies channels but whose rule has no cost hook, (activation
      counts) for activation-count hooks returning an op not costed.
  """

  def __init__(self, model, regularizer_class, strength: float = 0.0,
               input_shape=None, keep_output_widths: bool = True,
               min_channels: int = 1,
               layer_rules: Optional[layer_rules_lib.LayerRules] = None,
               **regularizer_kwargs):
    del input_shape  # Shapes come from the layer calls.
    self._class_name = _regularizer_name(regularizer_class)
    self._resource, self._name, self._cost_name = (
        SUPPORTED_REGULARIZERS[self._class_name])
    self._family = _family(self._class_name)
    arguments = _family_arguments(self._class_name, regularizer_kwargs)
    self._threshold = arguments['threshold']
    self._l1_fraction = arguments.get('l1_fraction', 0.0)
    self._on_mask = arguments.get('on_mask', True)
    self._alive_on_mask = arguments.get('alive_on_mask', True)
    self._model = model
    self._channels = channel_model_lib.analyze(model, layer_rules)
    self._min_channels = max(int(min_channels), 0)
    self._math = form_algebra.keras_math()
    self._layout()
    self._find_sources(keep_output_widths)
    self._calls = self._costed_calls()
    self._strength = _StrengthVariable(
        errors.check_number('strength', strength), trainable=False,
        dtype='float32', name='morph_net_strength')
    self._strength.on_assign = self._strength_changed
    self._rescue_strength = _StrengthVariable(
        0.0, trainable=False, dtype='float32',
        name='morph_net_rescue_strength')
    self._rescue_strength.on_assign = self._strength_changed
    self._rescue_band = _StrengthVariable(
        2.0 * self._threshold, trainable=False, dtype='float32',
        name='morph_net_rescue_band')
    self._rescue_band.on_assign = self._strength_changed
    self._metrics = []  # The metrics() given out, which the loss feeds.
    self._initial_cost = None

  # ---------------------------------------------------------- the analysis.

  def _layout(self):
    """Offsets of every group's channels in one vector of all channels."""
    self._roots, self._offsets, self._total = channel_layout(self._channels)

  def _map(self, space) -> np.ndarray:
    return channel_map(space, self._channels.table, self._offsets)

  def _find_sources(self, keep_output_widths):
    """{group root: [(read, its entry of each group channel)]}, where
    read() is the source's float32 regularization vector, and the roots
    that are regularized."""
    channels = self._channels
    self._hidden = {}  # See `_hidden_sources`.
    if self._family == 'GroupLasso':
      self._sources = self._kernel_sources()
    elif self._family == 'LogisticSigmoid':
      self._sources = self._gate_sources()
    else:
      self._sources = self._gamma_sources()
    outputs = channels.output_groups() if keep_output_widths else set()
    # A recurrent layer's units have no batch norm of their own: Gamma
    # regularizers keep them (as the graph engine, `keras/recurrent.py`).
    units = {channels.group_of(name) for name in channels.source_layers()
             if isinstance(channels.rule(name), builtin_rules.RecurrentRule)}
    if self._family == 'GroupLasso':
      # Their weights regularize them (`_kernel_sources`); so do the
      # weights of the hidden sizes the graph engine prunes, the others
      # keep their width (`_hidden_sources`).
      units = self._hidden_sources()
    else:
      # A transformer's hidden size (or an embedding's output) has no
      # batch norm or gate of its own: kept, as in the graph engine
      # (`morph_net.keras.hidden_size`).
      units |= _hidden_groups(channels)
    self._regularized = [
        root for root in self._roots if root in self._sources and
        not channels.is_frozen_group(root) and root not in outputs and
        root not in units]
    if not self._regularized:
      raise errors.NoSourceOpsError(
          'Model %r has no channel group the layer-level %s can regularize: '
          '%s' % (self._model.name, self._class_name,
                  _NO_SOURCE_HINTS[self._family]))
    connecting = set()
    if self._min_channels:
      connecting = {channels.group_of(group[0]) for group in
                    plan_lib.connecting_groups(channels)}
    self._connecting = connecting & set(self._regularized)
    self._regularized_set = set(self._regularized)
    self._connecting_layers = sorted(
        name for name in channels.source_layers()
        if channels.group_of(name) in self._connecting)

  def _hidden_sources(self) -> set:
    """GroupLasso family: gives each hidden size the graph engine prunes
    (`hidden_size.HiddenGroups.plan`) its one source, the group lasso of
    every weight holding a hidden channel (`hidden_members`; the graph
    engine overrides the group's regularizer with it), in place of its
    kernels' filters.

    A hidden size is pruned when every attention layer reading or writing
    it has its heads pruned (FLOPs and model size; an Embedding's output
    without attention always), and it can change width (not frozen, no
    model output: those are not regularized anyway).

    Returns:
      The roots of the hidden sizes that keep their width.

    Raises:
      InvalidArgumentError: for a pruned hidden size when
        `hidden_size.GROUPING` is not one of `hidden_members.GROUPINGS`, or
        `hidden_size.GRADIENT_SCALE` is not a finite number > 0.
    """
    channels = self._channels
    table = channels.table
    outputs = channels.output_groups()
    sources = set(channels.source_layers())
    kept = set()
    for root, attention in hidden_members.hidden_roots(channels).items():
      if channels.is_frozen_group(root) or root in outputs:
        continue
      if attention and self._resource not in _HEAD_RESOURCES:
        kept.add(root)  # Its attention layers keep their heads.
        continue
      layers = [name for name in channels.layers if name in sources and
                not isinstance(channels.rule(name),
                               builtin_rules.AttentionRule) and
                hidden_members.is_group(channels.layer_out[name], root,
                                        table)]
      found = hidden_members.kept_member_weights(channels, root)
      grouping = hidden_members.check_grouping(
          hidden_members.grouping(), layers or attention)
      scale = hidden_members.check_gradient_scale(
          hidden_members.gradient_scale(), layers or attention)
      size = table.size(root)
      if hidden_members.columns(found, size) is None:
        kept.add(root)  # No weight holds its channels.
        continue
      self._hidden[root] = layers  # Pruned: its width-taking layers.
      self._sources[root] = [(self._hidden_read(found, size, grouping,
                                                scale), np.arange(size))]
    return kept

  def _hidden_read(self, found, size: int, grouping: str,
                   scale: float = 1.0):
    """read(alive) -> the regularization vector of a hidden size whose
    weights are `found` (`hidden_members.kept_member_weights`): with
    grouping 'rms', the group lasso of all of them; with 'l2', the L2 norm
    of each member's group lasso (`L2GroupingRegularizer`, whose square
    root has a zero gradient at 0), as the graph engine's
    `hidden_size.HiddenGroups` builds it. Each mean is taken over the
    entries rebuild keeps: those of the alive heads and channels on a
    member's other side, `alive(root)` giving a group's alive vector
    (None: every entry kept). The gradient of the vector is multiplied by
    `scale`, its values unchanged (`hidden_size.GRADIENT_SCALE`)."""
    l1_fraction = self._l1_fraction
    channels = self._channels

    def read(alive):
      def alive_of(key):
        root = hidden_members.kept_group(channels, key)
        return None if root is None else alive(root)
      parts = hidden_members.kept_columns(found, size, alive=alive_of)
      if grouping == 'rms':
        parts = [(ops.concatenate([w for w, _ in parts], axis=0),
                  None if parts[0][1] is None else
                  ops.concatenate([k for _, k in parts], axis=0))]
      norms = [_kept_group_lasso(w, k, l1_fraction) for w, k in parts]
      if len(norms) == 1:
        vector = norms[0]  # One member: its own group lasso.
      else:
        squares = norms[0] * norms[0]
        for norm in norms[1:]:
          squares = squares + norm * norm
        positive = squares > 0
        vector = ops.where(positive,
                           ops.sqrt(ops.where(positive, squares, 1.0)), 0.0)
      if scale == 1.0:
        return vector
      # The difference is exactly 0: the values are the vector's.
      return vector + (scale - 1.0) * (vector - ops.stop_gradient(vector))

    return read

  def _copies(self, space) -> List:
    """[(group root, positions)]: for each copy of each group in `space`
    (a depthwise multiplier's, a flatten's), the entry of the space of
    each of the group's channels."""
    table = self._channels.table
    index = self._map(space)
    copies = []
    for root in sorted(set(table.find(g) for g in space.group_ids(table))):
      offset, size = self._offsets[root], table.size(root)
      where = [np.flatnonzero(index == offset + k) for k in range(size)]
      for copy in range(min(len(w) for w in where)):
        copies.append((root, np.array([w[copy] for w in where])))
    return copies

  def _gamma_sources(self):
    """Gamma family: the |gamma| of every batch norm over the last axis."""
    channels = self._channels
    sources, seen = {}, set()
    for layer, inputs, _ in channels.nodes:
      if (not isinstance(layer, keras.layers.BatchNormalization) or
          layer.gamma is None or layer.name in seen or len(inputs) != 1 or
          layer.axis not in (-1, len(inputs[0].shape) - 1, [-1],
                             [len(inputs[0].shape) - 1])):
        continue
      seen.add(layer.name)
      read = lambda layer=layer: ops.abs(ops.convert_to_tensor(layer.gamma))
      for root, positions in self._copies(channels.space[id(inputs[0])]):
        sources.setdefault(root, []).append((read, positions))
    return sources

  def _kernel_sources(self):
    """GroupLasso family: the group-lasso norm of the output filters of
    every conv (grouped, transposed, separable's pointwise), Dense and
    EinsumDense kernel, as the graph engine's conv and matmul source
    handlers (depthwise kernels are no sources), and of the kernels a
    custom layer's rule names with a `filter_kernels(layer)` method
    ([(kernel, axis of the layer's output channels)]: the excite kernel
    of a Squeeze-Excitation layer, whose matmul the graph engine finds
    grouped with the layer's output through the gating multiply)."""
    channels = self._channels
    sources, seen = {}, set()
    for layer, _, outputs in channels.nodes:
      if layer.name in seen:
        continue
      seen.add(layer.name)
      if isinstance(channels.rule(layer), builtin_rules.AttentionRule):
        if (layer.name in channels.source_layers() and
            self._resource in _HEAD_RESOURCES):
          # Its heads (the layer's own group): the group lasso of each
          # head's weights, as the graph engine's `attention.AttentionCalls`.
          root = channels.group_of(layer.name)
          read = (lambda layer=layer: group_lasso_vector(
              hidden_members.head_columns(layer), -1, self._l1_fraction))
          sources.setdefault(root, []).append(
              (read, np.arange(channels.table.size(root))))
        continue
      if isinstance(channels.rule(layer), builtin_rules.RecurrentRule):
        # A Bidirectional layer's output holds its units twice.
        copies = (channels.space_size(channels.space[id(outputs[0])]) //
                  builtin_rules.recurrent_units(layer))
        read = (lambda layer=layer, copies=copies: ops.tile(
            group_lasso_vector(recurrent_unit_weights(layer), -1,
                               self._l1_fraction), [copies]))
      else:
        found = kernel_filters(layer)
        if found is not None:
          found = [found]
        else:  # A custom layer's rule may name its kernels.
          hook = getattr(channels.rule(layer), 'filter_kernels', None)
          found = hook(layer) if hook is not None else []
        if not found:
          continue
        reads = [(lambda kernel=kernel, axis=axis: group_lasso_vector(
            kernel, axis, self._l1_fraction)) for kernel, axis in found]
        for read in reads:
          for root, positions in self._copies(
              channels.space[id(outputs[0])]):
            sources.setdefault(root, []).append((read, positions))
        continue
      for root, positions in self._copies(channels.space[id(outputs[0])]):
        sources.setdefault(root, []).append((read, positions))
    return sources

  def _gate_sources(self):
    """LogisticSigmoid family: every call of a gate over the last axis
    (each is a source, as each gating multiply is in the graph engine)."""
    channels = self._channels
    sources = {}
    for layer, inputs, _ in channels.nodes:
      if not is_gate(layer) or len(inputs) != 1 or layer.axis not in (
          -1, len(inputs[0].shape) - 1):
        continue  # A gate over another axis is no source (graph engine).
      read = functools.partial(self._read_gate, layer)
      for root, positions in self._copies(channels.space[id(inputs[0])]):
        sources.setdefault(root, []).append((read, positions))
    return sources

  def _read_gate(self, gate):
    """(regularization vector, alive source, probability) of a gate."""
    return _gate_vectors(gate, self._on_mask, self._alive_on_mask)

  def _gate_group(self, root):
    """(regularization, alive) of a group's gates: 1 - prod(1 - r) with
    the gradient of the soft Noisy-OR (`morph_net.framework.noisy_or`, as
    `ProbabilisticGroupingRegularizer`; one gate: its own vectors), alive
    if any gate is: its mask (or probability) at least the threshold."""
    vectors, probabilities, alive = [], [], None
    for read, positions in self._sources[root]:
      vector, alive_source, probability = read()
      if not np.array_equal(positions, np.arange(vector.shape[0])):
        vector = ops.take(vector, positions)
        alive_source = ops.take(alive_source, positions)
        probability = ops.take(probability, positions)
      is_alive = alive_source >= self._threshold
      alive = is_alive if alive is None else ops.logical_or(alive, is_alive)
      vectors.append(vector)
      probabilities.append(probability)
    return ops.cast(noisy_or_lib.noisy_or(vectors, probabilities, ops),
                    'float32'), alive

  def _costed_calls(self) -> List[_CostedCall]:
    return costed_calls(self._channels, self._offsets, self._total,
                        self._resource)

  # ------------------------------------------------------------ properties.

  @property
  def model(self):
    return self._model

  @property
  def channel_model(self) -> channel_model_lib.ChannelModel:
    """Surgery's channel model of the model (groups and spaces)."""
    return self._channels

  @property
  def name(self) -> str:
    return self._name

  @property
  def cost_name(self) -> str:
    return self._cost_name

  @property
  def resource(self) -> str:
    """What the cost counts: 'flops', 'model_size' or 'activation'."""
    return self._resource

  @property
  def alive_threshold(self) -> float:
    return self._threshold

  @property
  def min_channels(self) -> int:
    return self._min_channels

  @property
  def connecting_layers(self) -> List[str]:
    """Width-taking layers whose group keeps `min_channels` alive."""
    return list(self._connecting_layers)

  @property
  def strength(self):
    """The strength, a non-trainable keras.Variable.

    On JAX a compiled train step holds the strength it was traced with:
    assigning the variable retraces the model's compiled train and test
    steps, so the new value applies from the next step (inside `fit`
    too).
    """
    return self._strength

  def set_strength(self, value: float) -> None:
    self._strength.assign(errors.check_number('strength', value))

  def _strength_changed(self) -> None:
    if keras.backend.backend() != 'jax':
      return  # TensorFlow and PyTorch steps read the variable.
    model = self._model
    if getattr(model, 'train_function', None) is not None:
      model.make_train_function(force=True)
    if getattr(model, 'test_function', None) is not None:
      model.make_test_function(force=True)

  def _sync(self) -> None:
    """Inside a JAX `fit` the weights live in the loop's state: puts them
    back in the model's variables before they are read (the hook Keras
    gives callbacks)."""
    sync = getattr(self._model, 'jax_state_sync', None)
    if sync is not None:
      sync()

  @property
  def initial_cost(self) -> float:
    if self._initial_cost is None:
      self._initial_cost = float(self.cost())
    return self._initial_cost

  def set_strength_relative_to_cost(self, multiplier: float) -> float:
    """Sets strength = multiplier / initial cost; returns it."""
    return strength_lib.set_relative_to_cost(self, multiplier)

  # ---------------------------------------------------- vectors and totals.

  def _group_vectors(self):
    """(regularization, alive) float32 vectors over all channels, read from
    the live variables (inside a train step, from its traced values); the
    channels of a group whose every width-taking layer lost all its inputs
    are dead (`vanishing`)."""
    reg, alive, _ = self._vectors_and_vanishing()
    return reg, alive

  def _vectors_and_vanishing(self):
    """(regularization vector, alive vector, {layer name: scalar bool, its
    first call vanishes}) for the alive vectors read now.

    Layers vanish in cascade as in `rebuild` (`vanishing.Vanishing`, from
    the width-taking layers of groups with no alive channel): a group
    whose every width-taking layer lost all its inputs has no channels in
    the rebuilt model, so its alive entries are 0.
    """
    regs, alives = self._raw_group_vectors()
    channels = self._channels
    zero = {}
    for name in channels.source_layers():
      root = channels.group_of(name)
      if root in self._regularized_set and root not in self._connecting:
        zero[name] = ops.logical_not(ops.any(alives[root] > 0.5))
    vanishing = vanishing_lib.Vanishing(channels, zero, _KERAS_LOGIC)
    masks = vanishing.group_masks()
    for name, live in masks.items():
      root = channels.group_of(name)
      alives[root] = alives[root] * ops.cast(live, 'float32')
    return (ops.concatenate([regs[r] for r in self._roots]),
            ops.concatenate([alives[r] for r in self._roots]),
            vanishing.dead)

  def _raw_group_vectors(self):
    """({group root: regularization vector}, {group root: alive vector}),
    float32, before vanishing.

    The hidden sizes are read last: their values count only the entries
    of the alive heads and channels of the other groups
    (`_hidden_read`)."""
    table = self._channels.table
    regularized = self._regularized_set
    vectors = {}  # root -> (regularization, bool alive).

    def alive_of(root):
      """The alive vector of a regularized group other than a hidden
      size, or None (every channel kept)."""
      if root in self._hidden or root not in vectors:
        return None
      return vectors[root][1]

    order = sorted(self._roots, key=lambda r: r in self._hidden)
    for root in order:
      if root not in regularized:
        continue
      size = table.size(root)
      if self._family == 'LogisticSigmoid':
        values, alive = self._gate_group(root)
      else:
        values = None
        for read, positions in self._sources[root]:
          vector = read(alive_of) if root in self._hidden else read()
          if not np.array_equal(positions, np.arange(vector.shape[0])):
            vector = ops.take(vector, positions)
          vector = ops.cast(vector, 'float32')
          values = vector if values is None else combine_max(values, vector)
        alive = values > self._threshold
      if root in self._connecting:
        alive = self._keep_minimum(values, alive, size)
      vectors[root] = (values, alive)
    regs, alives = {}, {}
    for root in self._roots:
      if root not in vectors:
        size = table.size(root)
        regs[root] = ops.zeros([size], 'float32')
        alives[root] = ops.ones([size], 'float32')
        continue
      values, alive = vectors[root]
      regs[root] = values
      alives[root] = ops.cast(alive, 'float32')
    return regs, alives

  def _keep_minimum(self, values, alive, size):
    """`alive`, with the `min_channels` largest values alive when fewer are
    (as the graph engine's `MinimumAliveRegularizer`)."""
    keep = min(self._min_channels, size)
    top = ops.top_k(values, k=keep)[1]
    strongest = ops.sum(ops.one_hot(top, size), axis=0) > 0
    enough = ops.sum(ops.cast(alive, 'int32')) >= keep
    return ops.where(enough, alive, ops.logical_or(alive, strongest))

  def _total_of(self, is_regularization: bool):
    reg, alive, dead = self._vectors_and_vanishing()
    # The cost counts no arithmetic of a layer rebuild removes (the term,
    # as the graph engine's, keeps it).
    return evaluate_calls(self._calls, is_regularization, reg, alive,
                          self._math, None if is_regularization else dead)

  def term(self):
    """The regularization term (without strength), a float32 scalar."""
    return self._total_of(True)

  def cost(self):
    """The cost with dead channels removed, a float32 scalar."""
    self._sync()
    return self._total_of(False)

  @property
  def rescue_strength(self):
    """The non-trainable multiplier of `rescue_term` in `loss()` (0 unless
    `CostTargetCallback` sets it); assigning it retraces on JAX, as
    `strength`."""
    return self._rescue_strength

  @property
  def rescue_band(self):
    """The non-trainable upper edge of `rescue_term`'s band (initially
    twice the alive threshold)."""
    return self._rescue_band

  def rescue_term(self):
    """The alive channels' distance under the rescue band, summed.

    `sum(band - v)` over the regularization values `v` of every layer of
    `regularization_vectors()` (a group listed under several layers counts
    once per layer, as in the graph engine's `rescue_term`) with
    `alive_threshold < v < band`: its gradient pushes each such value up
    with a force of 1 per listing, and is 0 for the dead channels, the
    channels above the band and the kept layers. See
    `ModelRegularizer.rescue_term` and `CostTargetController`.

    Returns:
      A float32 scalar >= 0, differentiable in the regularized variables.
    """
    reg, _ = self._group_vectors()
    band = ops.cast(self._rescue_band, 'float32')
    total = ops.zeros([], 'float32')
    for value in self._per_layer(reg, lambda n: None).values():
      if value is None:  # A kept layer (inf in regularization_vectors).
        continue
      inside = ops.logical_and(value > self._threshold, value < band)
      total = total + ops.sum(ops.where(inside, band - value, 0.0))
    return total

  def loss(self):
    """strength * term + rescue_strength * rescue_term: what is added to
    the training loss (strength * term while the rescue strength is 0)."""
    return (ops.cast(self._strength, 'float32') * self.term() +
            ops.cast(self._rescue_strength, 'float32') * self.rescue_term())

  def record_metrics(self, loss_value) -> None:
    """Adds this step's values to the metrics `metrics()` gave out.

    `LayerMorphNetLoss` calls it in the loss, where the train step reads
    the step's weights on every backend (on JAX the loss runs inside the
    compiled step, with the model's and the metrics' variables mapped to
    the step's values); a metric's own `update_state`, which Keras calls
    after the step, could not read them on JAX.

    Args:
      loss_value: this step's `loss()`.
    """
    if not self._metrics:
      return
    cost = None
    for metric in self._metrics:
      if metric.quantity == 'cost':
        if cost is None:
          cost = ops.stop_gradient(self._total_of(False))
        metric.record(cost)
      else:
        metric.record(ops.stop_gradient(loss_value))

  def wrap_loss(self, loss) -> 'LayerMorphNetLoss':
    """A loss for `compile`: the data loss plus `self.loss()`.

    Args:
      loss: the data loss: a loss name, function or Loss instance.

    Returns:
      A `LayerMorphNetLoss`.
    """
    return LayerMorphNetLoss(loss, regularizer=self)

  # -------------------------------------------------------------- structure.

  def _per_layer(self, vector, kept_value) -> Dict[str, np.ndarray]:
    """{layer name: its output group's entries of `vector`} for the
    width-taking layers whose group has a source (kept groups:
    `kept_value(size)`), as the graph engine lists them."""
    channels = self._channels
    regularized = set(self._regularized)
    result = {}
    for name in channels.source_layers():
      layer = channels.layers.get(name)
      if layer is None or not (
          isinstance(channels.rule(layer), builtin_rules.WidthRule) or
          self._lists_units(layer) or self._lists_own_group(layer)):
        continue
      root = channels.group_of(name)
      if root not in self._sources:
        continue
      size = channels.table.size(root)
      if root in regularized:
        start = self._offsets[root]
        result[name] = vector[start:start + size]
      else:
        result[name] = kept_value(size)
    return result

  def _lists_units(self, layer) -> bool:
    """Whether `layer` is a recurrent layer whose units are regularized
    (GroupLasso), listed with its alive units as the graph engine does."""
    return (self._family == 'GroupLasso' and
            isinstance(self._channels.rule(layer),
                       builtin_rules.RecurrentRule))

  def _lists_own_group(self, layer) -> bool:
    """Whether `layer` is an attention layer whose heads have a source
    (GroupLasso, FLOPs or model size) or an Embedding whose hidden size is
    pruned, listed with its alive heads (output channels) as the graph
    engine does."""
    if self._family != 'GroupLasso':
      return False
    rule = self._channels.rule(layer)
    if isinstance(rule, builtin_rules.AttentionRule):
      return self._resource in _HEAD_RESOURCES
    return (isinstance(rule, builtin_rules.EmbeddingRule) and
            self._channels.group_of(layer.name) in self._hidden)

  def alive_vectors(self) -> Dict[str, np.ndarray]:
    """{layer name: numpy bool vector of alive output channels}."""
    self._sync()
    _, alive = self._group_vectors()
    alive = keras.ops.convert_to_numpy(alive) > 0.5
    return self._per_layer(alive, lambda n: np.ones([n], bool))

  def regularization_vectors(self) -> Dict[str, np.ndarray]:
    """{layer name: float32 |gamma| (max over the group's batch norms)};
    `inf` for a layer kept from regularization."""
    self._sync()
    reg, _ = self._group_vectors()
    reg = keras.ops.convert_to_numpy(reg).astype(np.float32)
    return self._per_layer(reg, lambda n: np.full([n], np.inf, np.float32))

  def alive_counts(self) -> Dict[str, int]:
    """{layer name: number of alive output channels}."""
    return {k: int(np.sum(v)) for k, v in self.alive_vectors().items()}

  def save_alive_counts(self, base_dir: str, step: int) -> str:
    """Writes learned_structure/alive_<step> and learned_structure/alive
    (local paths need no TensorFlow).

    Returns:
      The path of the step file.
    """
    return structure_files.save_alive_counts_files(self.alive_counts(),
                                                   base_dir, step)

  def metrics(self) -> List['LayerMorphNetMetric']:
    """Keras metrics showing the regularization loss and the cost in `fit`.

    The metrics are fed by the loss `wrap_loss` returns (see
    `record_metrics`): compile with both. Each step adds the values of
    that step's forward pass (the graph engine's metrics read them after
    the step's update), and a metric's result is their mean over the
    epoch.

    Returns:
      Two `LayerMorphNetMetric`s: 'morph_net_loss' (strength * term, plus
      the rescue term while it is on) and the cost (named after
      `cost_name` in lower case, e.g. 'flops').
    """
    metrics = [
        LayerMorphNetMetric('regularization_loss', name='morph_net_loss'),
        LayerMorphNetMetric('cost', name=self.cost_name.lower()),
    ]
    self._metrics.extend(metrics)
    return metrics


@keras.saving.register_keras_serializable(package='morph_net')
class LayerMorphNetLoss(keras.losses.Loss):
  """The data loss plus a `LayerRegularizer`'s `loss()`.

  Per example, the data loss plus the regularization loss; Keras averages
  over the batch, which adds the regularization once. Without a regularizer
  (a loaded model) it is the data loss alone.

  Args:
    loss: the data loss (a name, function or Loss instance).
    regularizer: the `LayerRegularizer`, or None.
    name: the loss name.
  """

  def __init__(self, loss, regularizer=None, name='morph_net_loss',
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.data_loss = keras.losses.get(loss)
    self.regularizer = regularizer

  def without_morph_net(self):
    """The data loss alone: `morph_net.surgery.rebuild` compiles a rebuilt
    model with it."""
    return self.data_loss

  def call(self, y_true, y_pred):
    data = self.data_loss(y_true, y_pred)
    if self.regularizer is None:
      return data
    value = self.regularizer.loss()
    self.regularizer.record_metrics(value)
    return data + value

  def get_config(self):
    config = super().get_config()
    config['loss'] = keras.losses.serialize(self.data_loss)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['loss'] = keras.losses.deserialize(config['loss'])
    return cls(**config)


@keras.saving.register_keras_serializable(package='morph_net')
class LayerMorphNetMetric(keras.metrics.Mean):
  """The mean of a `LayerRegularizer`'s regularization loss or cost per step.

  `LayerRegularizer.metrics()` makes them; the regularizer's loss
  (`wrap_loss`) adds each step's value (`record`), inside the train step
  on every backend. Keras's own `update_state(y_true, y_pred)` call adds
  nothing. Saved without its regularizer, a loaded metric stays at 0.

  Args:
    quantity: 'regularization_loss' or 'cost'.
    name: the metric name (default: `quantity`).
    dtype: the metric's dtype.

  Raises:
    InvalidArgumentError: for an unknown `quantity`.
  """

  def __init__(self, quantity: str, name: Optional[str] = None, dtype=None):
    if quantity not in _METRIC_QUANTITIES:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `quantity` of LayerMorphNetMetric. '
          'Expected one of %s. Received: quantity=%r' % (
              list(_METRIC_QUANTITIES), quantity))
    super().__init__(name=name or quantity, dtype=dtype)
    self._quantity = quantity

  @property
  def quantity(self) -> str:
    return self._quantity

  def without_morph_net(self) -> None:
    """Nothing: a model compiled without MorphNet drops this metric
    (`morph_net.surgery.rebuild` compiles a rebuilt model so)."""
    return None

  def update_state(self, y_true=None, y_pred=None, sample_weight=None):
    """Nothing: the regularizer's loss records the values (`record`)."""
    del y_true, y_pred, sample_weight

  def record(self, value) -> None:
    """Adds one step's value."""
    super().update_state(value)

  def get_config(self):
    config = super().get_config()
    config['quantity'] = self._quantity
    return config


_METRIC_QUANTITIES = ('regularization_loss', 'cost')
