"""Layer rules of the built-in Keras 3 layers (see `layer_rule.LayerRule`).

`builtin_rule_table()` maps every Keras layer class that model surgery
understands to its rule. A layer class that is not in the table (and has no
registered ancestor) is opaque: its input groups and its output keep their
widths.

A built-in layer kind also needs op handlers for the ops it traces to, a
cost form and a latency kind: `morph_net.keras.layer_kinds` declares all
four for every class of the table, and its test fails when they disagree.
"""

import importlib
from typing import Dict, Optional, Tuple

import keras
import numpy as np

from morph_net import errors
from morph_net.surgery import layer_cost
from morph_net.surgery import layer_rule
from morph_net.surgery import spaces

__all__ = ['OpaqueRule', 'WidthRule', 'SeparableConvRule', 'DepthwiseRule',
           'RecurrentRule', 'RECURRENT_GATES', 'recurrent_directions',
           'AttentionRule', 'attention_heads', 'attention_head_axes',
           'attention_input_positions', 'EmbeddingRule', 'ChannelNormRule',
           'EinsumDenseRule', 'einsum_dense_supported',
           'recurrent_units', 'ReshapeRule', 'PassThroughRule', 'NormalizerRule',
           'ChannelMixingRule',
           'FlattenRule', 'ConcatenateRule', 'MergeRule', 'AddRule',
           'builtin_rule_table', 'keras_rule_table', 'named_rule_table',
           'qualified_name',
           'reshape_space', 'sized_shape',
           'concat_space', 'output_rank']

L = keras.layers
UNKNOWN = layer_rule.UNKNOWN


def _to_numpy(variable) -> np.ndarray:
  return keras.ops.convert_to_numpy(variable)


def _single_input(node: layer_rule.LayerNode) -> bool:
  return len(node.input_spaces) == 1


def _is_channelwise(layer) -> bool:
  """A conv layer with as many groups as input and output channels (the
  layer-level twin of `graph_util.is_channelwise_conv`, which the graph
  analysis reads)."""
  groups = getattr(layer, 'groups', 1)
  if groups == 1 or getattr(layer, 'filters', None) != groups:
    return False
  kernel = getattr(layer, 'kernel', None)
  return kernel is not None and int(kernel.shape[-2]) == 1


class OpaqueRule(layer_rule.LayerRule):
  """A layer surgery does not understand: nothing around it changes width."""

  channelwise = False

  def output_space(self, node):
    return node.opaque(UNKNOWN)


class WidthRule(layer_rule.LayerRule):
  """Conv*, Conv*Transpose, Dense: the structure chooses the output width.

  The output channels form the layer's own group. The kernel holds the
  input channels on `input_axis` and the output channels on `output_axis`
  (-2 and -1 for convs and Dense; -1 and -2 for transposed convs); every
  other weight (the bias) holds the output channels on its last axis.

  Args:
    width_attribute: the config key of the width ('filters' or 'units').
    input_axis: the kernel axis of the input channels.
    output_axis: the kernel axis of the output channels.
  """

  affine = True
  channelwise = False

  def __init__(self, width_attribute: str = 'filters', input_axis: int = -2,
               output_axis: int = -1):
    self.width_attribute = width_attribute
    self._input_axis = input_axis
    self._output_axis = output_axis

  def output_space(self, node):
    groups = getattr(node.layer, 'groups', 1)
    if groups == 1:
      return node.layer_group()
    if (_is_channelwise(node.layer) and _single_input(node) and
        isinstance(node.input_spaces[0], spaces.Group)):
      # Output channel c is input channel c's: a depthwise conv, rebuilt
      # with as many groups as channels.
      return node.share_group(node.input_spaces[0])
    # Keras needs a grouped conv's input and output widths to be multiples
    # of `groups`, and channels to leave every group alike; per-channel
    # regularization promises neither, so both sides keep their width.
    group = node.layer_group()
    why = '(groups=%d: its widths must stay multiples of the groups)' % (
        groups)
    for space in node.input_spaces:
      node.freeze(space, 'it feeds the grouped conv %s %s' % (
          node.describe(), why))
    node.freeze(group, 'it is the output of the grouped conv %s %s' % (
        node.describe(), why))
    return group

  def clone_config(self, layer, config):
    if _is_channelwise(layer):
      config = dict(config, groups=config[self.width_attribute])
    return config

  def kernel(self, layer):
    """The weight whose norm per output channel scores the channels."""
    return layer.kernel

  def constant_channels(self, layer, weights, removed):
    """Zeroes the kernel's removed output columns; the bias stays."""
    del layer
    weights = list(weights)
    kernel = np.array(weights[0])
    index = [slice(None)] * kernel.ndim
    index[self._output_axis] = removed
    kernel[tuple(index)] = 0
    weights[0] = kernel
    return weights

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del new_shapes
    kernel = weights[0]
    if getattr(layer, 'groups', 1) == 1:
      # A grouped conv's kernel holds input channels / groups on that axis:
      # its inputs are whole (frozen), or one per group (channelwise).
      kernel = np.take(kernel, selection.input_indices, axis=self._input_axis)
    kernel = np.take(kernel, selection.output_indices, axis=self._output_axis)
    return [kernel] + [np.take(w, selection.output_indices, axis=-1)
                       for w in weights[1:]]

  def channel_scores(self, layer):
    kernel = _to_numpy(self.kernel(layer))
    kernel = np.moveaxis(kernel, self._output_axis, -1)
    kernel = kernel.reshape([-1, kernel.shape[-1]])
    return np.sqrt((kernel ** 2).sum(axis=0))

  def costed_ops(self, call):
    """One op: a conv (grouped, channelwise), a transposed conv or a Dense.

    FLOPs per channel pair: 2 x output positions x kernel size / groups
    for convs (a channelwise conv: per output channel), 2 x input
    positions x kernel size for transposed convs (their input is the small
    side), 2 x rows per example for a Dense (the positions of a rank >= 3
    input); weights: the kernel size / groups, 1 for a Dense.
    """
    single = layer_cost.first_input(call)
    layer = call.layer
    if (single is None or not layer_cost.channels_last(layer) or
        self.width_attribute not in ('filters', 'units')):
      return None
    tensor, space = single
    if self.width_attribute == 'units':
      rows = (layer_cost.positions(tensor, layer)
              if len(tensor.shape) >= 3 else 1)
      return [layer_cost.CostedOp('kernel', space, call.output_space,
                                  2.0 * rows, 1.0, False)]
    if not hasattr(layer, 'kernel_size'):  # A custom layer with this rule.
      return None
    kernel = float(layer_cost.kernel_positions(layer.kernel_size))
    if self._input_axis == -1:  # A transposed conv.
      spatial = layer_cost.positions(tensor, layer)
      return [layer_cost.CostedOp('kernel', space, call.output_space,
                                  2.0 * spatial * kernel, kernel, False)]
    spatial = layer_cost.positions(call.outputs[0], layer)
    groups = int(getattr(layer, 'groups', 1))
    if _is_channelwise(layer):
      return [layer_cost.CostedOp('kernel', space, call.output_space,
                                  2.0 * spatial * kernel, kernel, True)]
    return [layer_cost.CostedOp('kernel', space, call.output_space,
                                2.0 * spatial * kernel / groups,
                                kernel / groups, False)]


class SeparableConvRule(WidthRule):
  """SeparableConv1D/2D: a depthwise conv (multiplier k) then a pointwise one.

  Weights: the depthwise kernel (input channels on axis -2), the pointwise
  kernel (input channel c * k + j on axis -2, outputs on -1), the bias.
  """

  def kernel(self, layer):
    return layer.pointwise_kernel

  def constant_channels(self, layer, weights, removed):
    del layer
    weights = list(weights)
    pointwise = np.array(weights[1])
    pointwise[..., removed] = 0
    weights[1] = pointwise
    return weights

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del new_shapes
    depthwise_channels = spaces.repeat_indices(selection.input_indices,
                                               int(layer.depth_multiplier))
    pointwise = np.take(weights[1], depthwise_channels, axis=-2)
    return ([np.take(weights[0], selection.input_indices, axis=-2),
             np.take(pointwise, selection.output_indices, axis=-1)] +
            [np.take(w, selection.output_indices, axis=-1)
             for w in weights[2:]])

  def op_widths(self, layer, input_width, output_width, depthwise_op):
    factor = int(layer.depth_multiplier)
    if depthwise_op:
      return input_width, input_width * factor
    return input_width * factor, output_width

  def costed_ops(self, call):
    """Two ops: the depthwise conv (2 x output positions x kernel size
    FLOPs per output channel, of input x multiplier channels) and the
    pointwise conv (2 x output positions per channel pair)."""
    single = layer_cost.first_input(call)
    layer = call.layer
    if single is None or not layer_cost.channels_last(layer):
      return None
    _, space = single
    kernel = float(layer_cost.kernel_positions(layer.kernel_size))
    spatial = layer_cost.positions(call.outputs[0], layer)
    middle = layer_cost.repeated(space, int(layer.depth_multiplier))
    return [layer_cost.CostedOp('depthwise', space, middle,
                                2.0 * spatial * kernel, kernel, True),
            layer_cost.CostedOp('pointwise', middle, call.output_space,
                                2.0 * spatial, 1.0, False)]


class DepthwiseRule(layer_rule.LayerRule):
  """DepthwiseConv1D/2D: output channel c * k + j comes from input c."""

  affine = True

  def output_space(self, node):
    if not _single_input(node):
      return node.opaque(UNKNOWN)
    factor = int(node.layer.depth_multiplier)
    if factor == 1:
      return node.input_spaces[0]
    return spaces.Repeat(node.input_spaces[0], factor)

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del new_shapes
    return ([np.take(weights[0], selection.input_indices, axis=-2)] +
            [np.take(w, selection.output_indices, axis=-1)
             for w in weights[1:]])

  def costed_ops(self, call):
    """One depthwise op: 2 x output positions x kernel size FLOPs per
    output channel."""
    single = layer_cost.first_input(call)
    layer = call.layer
    if single is None or not layer_cost.channels_last(layer):
      return None
    kernel = float(layer_cost.kernel_positions(layer.kernel_size))
    spatial = layer_cost.positions(call.outputs[0], layer)
    return [layer_cost.CostedOp('depthwise', single[1], call.output_space,
                                2.0 * spatial * kernel, kernel, True)]


# Gates of the recurrent cells whose units rebuild narrows; Keras lays each
# weight's last axis out gate after gate (LSTM i, f, c, o; GRU z, r, h).
RECURRENT_GATES = {'SimpleRNN': 1, 'GRU': 3, 'LSTM': 4}


def recurrent_directions(layer) -> list:
  """The recurrent layers of `layer`: [forward, backward] of a
  Bidirectional wrapper, else [layer]."""
  if hasattr(layer, 'forward_layer'):
    return [layer.forward_layer, layer.backward_layer]
  return [layer]


def recurrent_units(layer) -> Optional[int]:
  """The units of a SimpleRNN, GRU or LSTM (or of a Bidirectional wrapper
  whose two directions are such layers of the same width), or None."""
  widths = set()
  for rnn in recurrent_directions(layer):
    if type(rnn).__name__ not in RECURRENT_GATES:
      return None
    widths.add(int(rnn.units))
  return widths.pop() if len(widths) == 1 else None


def _zero_at_zero(layer) -> bool:
  """Whether every direction's activation maps 0 to 0 (tanh, relu, linear
  ...), so that a unit whose weights are zero outputs 0."""
  for rnn in recurrent_directions(layer):
    activation = getattr(rnn, 'activation', None)
    if activation is None:
      return False
    value = _to_numpy(activation(keras.ops.zeros([1])))
    if float(np.abs(value).max()) != 0.0:
      return False
  return True


def _gate_columns(units: np.ndarray, width: int, gates: int) -> np.ndarray:
  """Columns g * width + u of each gate g for each unit u of `units`."""
  return (np.arange(gates)[:, None] * width +
          np.asarray(units)[None, :]).reshape([-1])


class RecurrentRule(layer_rule.LayerRule):
  """SimpleRNN, GRU, LSTM and Bidirectional wrappers of them.

  The input channels follow the group feeding the layer (each direction's
  `kernel` has one row per input channel). The units are the layer's own
  group (`units` is its width): unit u of every direction is one channel,
  so a Bidirectional layer's two directions keep the same units (Keras
  gives both one `units`) and its concatenated output holds the group
  twice. Rebuild narrows `units` and keeps, per direction and per gate, the
  kernel columns, the recurrent kernel's rows and columns and the biases of
  the surviving units. A unit whose weights are all zero outputs 0 at every
  step from a zero initial state (tanh(0) = 0; an LSTM's cell stays 0; a
  GRU's state mixes 0 with 0), so removing it keeps the outputs.

  A layer whose outputs do not all hold its units once (return_state of a
  Bidirectional layer) or twice (Bidirectional concatenation), or whose
  cell is not one of the three, keeps its units.

  The layer mixes its input channels through its recurrence, so it is not
  channelwise; but each direction reads its input only through
  `kernel` and adds its input bias before any nonlinearity (the first row
  of a GRU's bias with reset_after), so constant folding moves the
  constant of removed input channels into that bias exactly (see
  `morph_net.surgery.folding`).
  """

  width_attribute = 'units'
  channelwise = False

  def output_space(self, node):
    if not _single_input(node):
      return node.opaque(UNKNOWN)
    layer = node.layer
    units = recurrent_units(layer)
    channels = {layer_rule.num_channels(t) for t in node.outputs}
    copies = None
    if units is not None and len(channels) == 1:
      copies = {units: 1, 2 * units: 2}.get(channels.pop())
    if copies is not None and not _zero_at_zero(layer):
      return node.new_group(
          node.output_channels(),
          'it is the output of recurrent layer %s, whose units keep their '
          'width (its activation is not 0 at 0, so a unit with zero '
          'weights does not output 0)' % node.describe())
    if copies is None or (copies == 2 and not hasattr(layer,
                                                      'forward_layer')):
      return node.new_group(
          node.output_channels(),
          'it is the output of recurrent layer %s, whose units keep their '
          'width (rebuild narrows the units of SimpleRNN, GRU and LSTM '
          'layers, and of Bidirectional wrappers of them with one width)' %
          node.describe())
    group = node.share_group(node.new_group(units))
    return group if copies == 1 else spaces.Concat((group, group))

  def costed_ops(self, call):
    """Per direction, the input kernel (inputs x gates x units) and the
    recurrent kernel (units x gates x units), each 2 x steps FLOPs per
    channel pair and gate (the graph engine's `keras/recurrent.py`
    formula).

    Both ops write the layer's output space, which holds each unit once
    or twice (a Bidirectional concatenation): their coefficients are
    divided by the copies, so the cost and term are those of the units.
    """
    single = layer_cost.first_input(call)
    if single is None:
      return None
    tensor, space = single
    steps = layer_cost.positions(tensor, call.layer)
    out_channels = int(call.outputs[0].shape[-1])
    ops = []
    for rnn in recurrent_directions(call.layer):
      gates = RECURRENT_GATES.get(type(rnn).__name__)
      units = int(getattr(rnn, 'units', 0) or 0)
      if gates is None or not units or out_channels % units:
        return None
      copies = out_channels // units
      if copies not in (1, 2):
        return None
      ops.append(layer_cost.CostedOp(
          'kernel', space, call.output_space,
          2.0 * steps * gates / copies, float(gates) / copies, False))
      ops.append(layer_cost.CostedOp(
          'recurrent_kernel', call.output_space, call.output_space,
          2.0 * steps * gates / copies ** 2, float(gates) / copies ** 2,
          False))
    return ops

  def activation_ops(self, call, costed_ops):
    """No op: the graph engine counts no activation of a recurrent layer.

    It cuts the layer's loop out of its analysis and costs the layer from
    its config, FLOPs and model size only (`morph_net.keras.recurrent`,
    which warns that the activation count leaves the layer out); the
    layer-level regularizer counts the same (and warns too).
    """
    del call, costed_ops
    return []

  def clone_config(self, layer, config):
    """Moves a wrapper's `units` (set by rebuild; Bidirectional has none)
    into its inner layers, and drops their recorded input shapes, which
    would build them for the original input width."""
    del layer
    config = dict(config)
    units = config.pop('units', None) if 'layer' in config else None
    for key in ('layer', 'backward_layer'):
      inner = config.get(key)
      if isinstance(inner, dict):
        inner = {k: v for k, v in inner.items() if k != 'build_config'}
        if units is not None and isinstance(inner.get('config'), dict):
          inner['config'] = dict(inner['config'], units=units)
        config[key] = inner
    return config

  def transfer_weights(self, layer, weights, new_shapes, selection):
    units = recurrent_units(layer)
    gates = {}
    for rnn in recurrent_directions(layer):
      for variable in rnn.weights:
        gates[id(variable)] = RECURRENT_GATES.get(type(rnn).__name__)
    kept = None
    if units is not None:
      kept = np.asarray(selection.output_indices)
      kept = kept[kept < units]
    values = []
    for variable, weight, shape in zip(layer.weights, weights, new_shapes):
      kind = variable.path.rsplit('/', 1)[-1]
      gate_count = gates.get(id(variable))
      if tuple(weight.shape) == tuple(shape):
        values.append(weight)
        continue
      if kind == 'kernel':
        weight = np.take(weight, selection.input_indices, axis=0)
      if kept is not None and gate_count and kind in (
          'kernel', 'recurrent_kernel', 'bias'):
        columns = _gate_columns(kept, units, gate_count)
        weight = np.take(weight, columns, axis=-1)
        if kind == 'recurrent_kernel':
          weight = np.take(weight, kept, axis=0)
      if tuple(weight.shape) != tuple(shape):
        raise errors.WeightTransferError(
            'Cannot transfer weight %r of recurrent layer %s: shape %s, '
            'rebuilt %s; only the kernels, recurrent kernels and biases '
            'follow the input channels and the units.'
            % (variable.path, layer_rule.describe_layer(layer),
               tuple(np.shape(weights[len(values)])), tuple(shape)))
      values.append(weight)
    return values

  def constant_channels(self, layer, weights, removed):
    """Zeroes every weight of the removed units (kernel and recurrent
    kernel columns of each gate, their recurrent kernel rows, their
    biases) in every direction: such a unit outputs 0 at every step (its
    activation is 0 at 0, see `output_space`; a GRU or LSTM unit whose
    gates read 0 keeps a zero state), as rebuild assumes when it removes
    it. A layer whose units keep their width is left as it is (None)."""
    units = recurrent_units(layer)
    if units is None:
      return None
    removed = np.asarray(removed)
    removed = np.unique(removed[removed < units])
    if not removed.size:
      return None
    gates = {}
    for rnn in recurrent_directions(layer):
      for variable in rnn.weights:
        gates[id(variable)] = RECURRENT_GATES.get(type(rnn).__name__)
    values = []
    for variable, weight in zip(layer.weights, weights):
      weight = np.array(weight)
      kind = variable.path.rsplit('/', 1)[-1]
      gate_count = gates.get(id(variable))
      if gate_count and kind in ('kernel', 'recurrent_kernel', 'bias'):
        weight[..., _gate_columns(removed, units, gate_count)] = 0
        if kind == 'recurrent_kernel':
          weight[removed, :] = 0
      values.append(weight)
    return values

  def channel_scores(self, layer):
    """Per unit, the root mean square of its weights in every direction
    (the unit's group-lasso norm, see `morph_net.keras.recurrent`)."""
    units = recurrent_units(layer)
    if units is None:
      return None
    squares = np.zeros([units])
    count = 0
    for rnn in recurrent_directions(layer):
      gates = RECURRENT_GATES[type(rnn).__name__]
      for variable in rnn.weights:
        kind = variable.path.rsplit('/', 1)[-1]
        value = _to_numpy(variable).astype(np.float64)
        if kind == 'recurrent_kernel':
          rows = value.copy()
          rows[np.arange(units)[:, None],
               _gate_columns(np.arange(units), units, gates).reshape(
                   [gates, units]).T] = 0.0
          squares += (rows ** 2).sum(axis=1)
          count += rows.shape[1] - gates
        if kind in ('kernel', 'recurrent_kernel', 'bias'):
          per_unit = value.reshape([-1, gates, units])
          squares += (per_unit ** 2).sum(axis=(0, 1))
          count += per_unit.shape[0] * gates
    return np.sqrt(squares / max(count, 1))


def attention_heads(layer) -> Optional[int]:
  """The heads of a MultiHeadAttention layer whose heads rebuild removes
  (built, attention over the steps of rank-3 inputs, no gate, the default
  output width), or None."""
  if not isinstance(layer, L.MultiHeadAttention) or not layer.built:
    return None
  axes = getattr(layer, '_attention_axes', None)
  if (getattr(layer, '_use_gate', False) or
      getattr(layer, '_output_shape', None) is not None or
      axes not in (None, (1,), [1]) or
      getattr(layer, '_query_dense', None) is None or
      len(layer._query_dense.kernel.shape) != 3):  # pylint: disable=protected-access
    return None
  return int(layer.num_heads)


def attention_head_axes(layer) -> list:
  """[(variable, its head axis)] of the weights of a MultiHeadAttention
  layer that hold its heads: the query, key and value kernels (d, heads,
  dim) and biases (heads, dim), and the output kernel (heads, value_dim,
  out). The output bias holds no head."""
  result = []
  for dense in (layer._query_dense, layer._key_dense, layer._value_dense):  # pylint: disable=protected-access
    result.append((dense.kernel, 1))
    if dense.bias is not None:
      result.append((dense.bias, 0))
  result.append((layer._output_dense.kernel, 0))  # pylint: disable=protected-access
  return result


def attention_input_positions(layer, inputs=None, args=None,
                              kwargs=None) -> Optional[Tuple[int, int, int]]:
  """Where the query, value and key of a MultiHeadAttention call are.

  Args:
    layer: the MultiHeadAttention layer.
    inputs: the call's input tensors, flattened as its node holds them
      (default: those of the layer's first call).
    args, kwargs: the call's arguments (default: the first call's).

  Returns:
    (query, value, key) positions in `inputs` (the key is the value when
    not given), or None when they are not found.
  """
  if inputs is None:
    nodes = getattr(layer, '_inbound_nodes', None) or []
    if not nodes:
      return None
    node = nodes[0]
    inputs = list(node.input_tensors)
    arguments = getattr(node, 'arguments', None)
    args = tuple(getattr(arguments, 'args', ()) or ())
    kwargs = dict(getattr(arguments, 'kwargs', {}) or {})
  args, kwargs = tuple(args or ()), dict(kwargs or {})
  named = dict(zip(('query', 'value', 'key'), args))
  for role in ('query', 'value', 'key'):
    if role in kwargs:
      named[role] = kwargs[role]
  if named.get('key') is None:
    named['key'] = named.get('value')
  positions = []
  for role in ('query', 'value', 'key'):
    found = [i for i, t in enumerate(inputs) if t is named.get(role)]
    if not found:
      return None
    positions.append(found[0])
  return tuple(positions)


class AttentionRule(layer_rule.LayerRule):
  """MultiHeadAttention: a structure sets its number of heads.

  The heads are the layer's own group (`num_heads` is its width); head h is
  its query, key and value kernel columns and biases and its rows of the
  output projection. They are not channels of the layer's output, which
  the output projection mixes. The query, key and value projections read
  their inputs' channels (kernel rows), so those inputs keep their groups;
  with the default `output_shape` the output projection writes as many
  channels as the query has, and its columns (and bias) are the query's
  group: a transformer's hidden size narrows the attention with it.
  Rebuild keeps `key_dim`, `value_dim` and slices the weights of the
  surviving heads (`ChannelSelection.layer_indices`: the alive heads of a
  regularizer or of `alive_masks`; else those with the largest group-lasso
  norm, `channel_scores`), the kernel rows of the surviving input channels
  and the output columns of the surviving query channels. A head whose
  value kernel and bias are zero adds 0 to the output (its
  attention-weighted values are 0 whatever the softmax), so removing a
  dead head keeps the outputs; so does removing an input channel that is
  zero, and an output channel whose kernel column and bias are zero.

  A layer with a gate, another output shape, attention over other axes or
  inputs of another rank is opaque: it keeps its heads and its channels.
  """

  width_attribute = 'num_heads'
  channelwise = False

  def output_space(self, node):
    heads = attention_heads(node.layer)
    positions = attention_input_positions(node.layer, node.inputs,
                                          node.args, node.kwargs)
    if (heads is None or positions is None or
        any(len(t.shape) != 3 for t in node.inputs)):
      return node.opaque(UNKNOWN)
    node.share_group(node.new_group(heads))
    roles = [node.inputs[p] for p in positions]
    for tensor, space in zip(node.inputs, node.input_spaces):
      if not any(tensor is role for role in roles):
        node.freeze(space, 'it is the attention mask of layer %s' %
                    node.describe())
    query = node.input_spaces[positions[0]]
    if node.output_channels() != layer_rule.num_channels(
        node.inputs[positions[0]]):
      return node.opaque(UNKNOWN)
    return query

  def _kept_heads(self, layer, heads: int) -> np.ndarray:
    order = np.argsort(-self.channel_scores(layer), kind='stable')
    return np.sort(order[:heads])

  def _input_indices(self, layer, selection):
    """{id(projection kernel): surviving rows} of the query, key and
    value projections (empty when the inputs are not known: they keep
    their width)."""
    positions = attention_input_positions(layer)
    if positions is None or selection.inputs_indices is None:
      return {}
    query, value, key = positions
    dense = (layer._query_dense, layer._value_dense, layer._key_dense)  # pylint: disable=protected-access
    return {id(d.kernel): selection.inputs_indices[p]
            for d, p in zip(dense, (query, value, key))}

  def transfer_weights(self, layer, weights, new_shapes, selection):
    axes = {id(v): axis for v, axis in attention_head_axes(layer)}
    heads = None
    for variable, shape in zip(layer.weights, new_shapes):
      if id(variable) in axes:
        heads = int(shape[axes[id(variable)]])
        break
    if heads is not None and heads > int(layer.num_heads):
      raise errors.WeightTransferError(
          'Cannot transfer the weights of attention layer %s: its heads grow '
          'from %d to %d, and the new heads have no weights to copy. Rebuild '
          'it with transfer_weights=False, or with at most %d heads.' % (
              layer_rule.describe_layer(layer), int(layer.num_heads), heads,
              int(layer.num_heads)))
    kept = None
    if selection is not None and selection.layer_indices is not None:
      kept = np.asarray(selection.layer_indices)
    if kept is None or len(kept) != heads:
      kept = self._kept_heads(layer, heads)
    rows = {} if selection is None else self._input_indices(layer, selection)
    output = layer._output_dense  # pylint: disable=protected-access
    columns = {id(output.kernel)}
    if output.bias is not None:
      columns.add(id(output.bias))
    values = []
    for variable, weight, shape in zip(layer.weights, weights, new_shapes):
      if id(variable) in axes:
        weight = np.take(weight, kept, axis=axes[id(variable)])
      if id(variable) in rows:
        weight = np.take(weight, rows[id(variable)], axis=0)
      if (id(variable) in columns and selection is not None and
          selection.output_indices is not None and
          weight.shape[-1] != shape[-1]):
        weight = np.take(weight, selection.output_indices, axis=-1)
      if tuple(weight.shape) != tuple(shape):
        raise errors.WeightTransferError(
            'Cannot transfer weight %r of attention layer %s: shape %s, '
            'rebuilt %s; only the number of heads, the input channels and '
            'the output channels may change.' % (
                variable.path, layer_rule.describe_layer(layer),
                tuple(np.shape(weight)), tuple(shape)))
      values.append(weight)
    return values

  def constant_channels(self, layer, weights, removed):
    """Zeroes the output projection's removed columns; the bias stays."""
    weights = list(weights)
    output = layer._output_dense.kernel  # pylint: disable=protected-access
    for i, variable in enumerate(layer.weights):
      if variable is output:
        kernel = np.array(weights[i])
        kernel[..., removed] = 0
        weights[i] = kernel
    return weights

  def costed_ops(self, call):
    """Per head (the layer's group, `call.layer_space`): the query, key
    and value projections (2 x steps x key_dim or value_dim FLOPs and
    key_dim or value_dim weights per input channel and head), the output
    projection (2 x query steps x value_dim FLOPs, value_dim weights per
    head and output channel) and the attention products QK^T and the
    attention times V (2 x query steps x key steps x (key_dim +
    value_dim) FLOPs per head, no weights): the formula of the graph
    engine's `morph_net.keras.attention`. A layer without a head group
    (opaque) is not costed (None)."""
    layer = call.layer
    if call.layer_space is None or attention_heads(layer) is None:
      return None
    positions = _call_positions(layer, call.inputs)
    if positions is None:
      return None
    query, value, key = positions
    tq = int(call.inputs[query].shape[1])
    tk = int(call.inputs[key].shape[1])
    key_dim, value_dim = float(layer.key_dim), float(layer.value_dim)
    heads = call.layer_space
    return [
        layer_cost.CostedOp('query', call.input_spaces[query], heads,
                            2.0 * tq * key_dim, key_dim, False),
        layer_cost.CostedOp('key', call.input_spaces[key], heads,
                            2.0 * tk * key_dim, key_dim, False),
        layer_cost.CostedOp('value', call.input_spaces[value], heads,
                            2.0 * tk * value_dim, value_dim, False),
        layer_cost.CostedOp('output', heads, call.output_space,
                            2.0 * tq * value_dim, value_dim, False),
        layer_cost.CostedOp('products', layer_cost.Fixed(1), heads,
                            2.0 * tq * tk * (key_dim + value_dim), 0.0,
                            False)]

  def channel_scores(self, layer):
    """Per head, the root mean square of its weights (the head's
    group-lasso norm, see `morph_net.keras.attention`)."""
    heads = int(layer.num_heads)
    squares = np.zeros([heads])
    count = 0
    for variable, axis in attention_head_axes(layer):
      value = np.moveaxis(_to_numpy(variable).astype(np.float64), axis, 0)
      value = value.reshape([heads, -1])
      squares += (value ** 2).sum(axis=1)
      count += value.shape[1]
    return np.sqrt(squares / max(count, 1))


def _call_positions(layer, inputs):
  """`attention_input_positions` of the call of `layer` whose input
  tensors are `inputs` (a shared layer's calls each have theirs)."""
  for node in getattr(layer, '_inbound_nodes', None) or []:
    tensors = list(node.input_tensors)
    if len(tensors) == len(inputs) and all(
        a is b for a, b in zip(tensors, inputs)):
      arguments = getattr(node, 'arguments', None)
      return attention_input_positions(
          layer, tensors, tuple(getattr(arguments, 'args', ()) or ()),
          dict(getattr(arguments, 'kwargs', {}) or {}))
  return None


def einsum_dense_supported(layer) -> bool:
  """Whether an EinsumDense layer is a Dense over the last axis: equation
  '<x>c,cd-><x>d' (2-D kernel, input channels contracted with its rows,
  output channels its columns) and a bias on d or none."""
  equation = str(getattr(layer, 'equation', '')).replace(' ', '')
  if '->' not in equation or equation.count(',') != 1:
    return False
  inputs, output = equation.split('->')
  source, kernel = inputs.split(',')
  if len(kernel) != 2 or not source or not output or '.' in equation:
    return False
  c, d = kernel
  bias = getattr(layer, 'bias_axes', None)
  return (source[-1] == c and output[-1] == d and c not in output and
          d not in source and source[:-1] == output[:-1] and
          bias in (None, '', d))


class EinsumDenseRule(WidthRule):
  """EinsumDense over the last axis ('abc,cd->abd', see
  `einsum_dense_supported`): a Dense whose width is the last entry of
  `output_shape`. Other equations are opaque."""

  def __init__(self):
    super().__init__('output_shape', input_axis=-2, output_axis=-1)

  def output_space(self, node):
    if not einsum_dense_supported(node.layer) or not _single_input(node):
      return node.opaque(UNKNOWN)
    return super().output_space(node)

  def clone_config(self, layer, config):
    width = config.get('output_shape')
    original = layer.get_config().get('output_shape')
    if isinstance(width, int) and isinstance(original, (list, tuple)):
      config = dict(config, output_shape=tuple(original[:-1]) + (width,))
    return config

  def costed_ops(self, call):
    """A Dense over the last axis: 2 x rows per example (the positions of
    a rank >= 3 input) FLOPs and 1 weight per channel pair; other
    equations are unknown."""
    single = layer_cost.first_input(call)
    if single is None or not einsum_dense_supported(call.layer):
      return None
    tensor, space = single
    rows = (layer_cost.positions(tensor, call.layer)
            if len(tensor.shape) >= 3 else 1)
    return [layer_cost.CostedOp('kernel', space, call.output_space,
                                2.0 * rows, 1.0, False)]


class EmbeddingRule(layer_rule.LayerRule):
  """Embedding: a structure sets its output width (`output_dim`).

  The token ids it reads are not channels; its output channels are the
  layer's own group, the columns of the embedding matrix (which rebuild
  slices). In a transformer that group is the hidden size: the residual
  adds, layer norms and projections reading and writing the stream share
  it.
  """

  width_attribute = 'output_dim'
  channelwise = False

  def output_space(self, node):
    if not _single_input(node):
      return node.opaque(UNKNOWN)
    return node.layer_group()

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del layer, new_shapes
    return [np.take(w, selection.output_indices, axis=-1) for w in weights]

  def constant_channels(self, layer, weights, removed):
    """Zeroes the removed columns: those channels output 0."""
    del layer
    weights = list(weights)
    table = np.array(weights[0])
    table[..., removed] = 0
    weights[0] = table
    return weights

  def channel_scores(self, layer):
    table = _to_numpy(layer.embeddings).astype(np.float64)
    return np.sqrt((table ** 2).sum(axis=0))

  def costed_ops(self, call):
    """[]: a table lookup multiplies nothing (the graph engine does not
    cost its gather either)."""
    del call
    return []


def reshape_space(node: layer_rule.LayerNode) -> spaces.ChannelSpace:
  """The output space of a reshape (the Reshape layer, `ops.reshape`).

  A reshape keeps the element order. When the output's last axis has the
  input's size, channel c of every position stays channel c: the channels
  pass through. A reshape to (batch, n) whose n is all of the input's
  elements is a flatten (`spaces.Flattened`). Any other reshape mixes
  channels with positions and is opaque.
  """
  if not _single_input(node):
    return node.opaque(UNKNOWN)
  in_shape = tuple(node.inputs[0].shape)
  out_shape = tuple(node.outputs[0].shape)
  channels = in_shape[-1] if in_shape else None
  if channels is not None and out_shape and out_shape[-1] == channels:
    return node.input_spaces[0]
  inner = in_shape[1:]
  if (len(out_shape) == 2 and len(in_shape) > 2 and
      None not in inner and out_shape[-1] == int(np.prod(inner))):
    return spaces.Flattened(node.input_spaces[0], int(np.prod(inner[:-1])))
  return node.opaque('which does not keep the last axis')


def sized_shape(shape, output_width: int) -> tuple:
  """A reshape target whose last entry is the rebuilt output width.

  The other entries (including a -1) do not depend on the channel count
  when the reshape keeps the last axis or flattens (see `reshape_space`).
  """
  return tuple(shape[:-1]) + (int(output_width),)


class ReshapeRule(layer_rule.LayerRule):
  """Reshape keeping the last axis (an SE block's (1, 1, C), tokens (N, C),
  a detector's per-scale (-1, 4) boxes) or flattening; see `reshape_space`.

  The rebuilt layer's target shape ends with its rebuilt width.
  """

  def output_space(self, node):
    return reshape_space(node)

  def sized_config(self, layer, config, output_width):
    del layer
    return dict(config,
                target_shape=sized_shape(config['target_shape'],
                                         output_width))


class PassThroughRule(layer_rule.LayerRule):
  """Layers whose output channels are their input channels.

  Activations, dropouts, pooling, padding, cropping, upsampling and
  normalizations that act on the last axis. A layer acting on another axis,
  or using channels_first, is opaque.
  """

  def output_space(self, node):
    if not _single_input(node):
      return node.opaque(UNKNOWN)
    layer = node.layer
    axis = getattr(layer, 'axis', -1)
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
      axis = axis[0]  # RMSNormalization keeps its axis as a list.
    rank = node.input_rank()
    if (isinstance(axis, int) and axis not in (-1, rank - 1)) or (
        node.output_channels() != layer_rule.num_channels(node.inputs[0])):
      return node.opaque('which does not act on the last axis')
    if getattr(layer, 'data_format', 'channels_last') == 'channels_first':
      return node.opaque('which uses channels_first')
    return node.input_spaces[0]


class NormalizerRule(PassThroughRule):
  """BatchNormalization: pass-through whose |gamma| scores the channels."""

  def normalizer_scores(self, layer):
    if not getattr(layer, 'scale', False):
      return None
    return np.abs(_to_numpy(layer.gamma))

  def constant_channels(self, layer, weights, removed):
    """Zeroes the gammas of the removed channels: they output beta."""
    if not getattr(layer, 'scale', False):
      return None
    weights = list(weights)
    gamma = np.array(weights[0])
    gamma[removed] = 0
    weights[0] = gamma
    return weights


class ChannelMixingRule(PassThroughRule):
  """Softmax (and the base of the normalizations over channels):
  pass-through over the last axis, whose outputs depend on all channels
  (narrowing changes them)."""

  channelwise = False
  # Whether removing input channels that are zero keeps the outputs of
  # the other channels exactly (after `transfer_weights`).
  narrows_exactly = False


def _original_channels(layer) -> Optional[int]:
  """The channels of the (first) input of a called layer, or None."""
  nodes = getattr(layer, '_inbound_nodes', None) or []
  if not nodes or not nodes[0].input_tensors:
    return None
  return layer_rule.num_channels(nodes[0].input_tensors[0])


class ChannelNormRule(ChannelMixingRule):
  """LayerNormalization and RMSNormalization over the last axis.

  A channel whose input is zero still counts in the statistics over d
  channels: removing it leaves d' channels, whose mean square is d / d'
  times the old one. Rebuild keeps the statistics per channel: the
  rebuilt layer's epsilon is epsilon x d / d' (`sized_config`) and its
  scale is gamma x sqrt(d / d') (`transfer_weights`), so that

    x / sqrt(S / d' + eps d / d') x gamma sqrt(d / d')
      = x / sqrt(S / d + eps) x gamma

  for a sum of squares S. For RMSNormalization (mean of squares) that is
  exact (`narrows_exactly`). LayerNormalization subtracts the mean (its
  deprecated `rms_scaling=True` divides by the centred variance): the
  mean over d' channels is d / d' times the mean over d, so the outputs
  change by terms of the order of the mean over the channels, removed
  channels zero or not; with zero-mean inputs the same correction is
  exact.
  """

  def __init__(self, scale_names=('gamma', 'scale'), exact: bool = False):
    self._scale_names = tuple(scale_names)
    self.narrows_exactly = exact

  def sized_config(self, layer, config, output_width):
    original = _original_channels(layer)
    if ('epsilon' not in config or original is None or not output_width or
        output_width == original):
      return config
    return dict(config, epsilon=float(config['epsilon']) * original /
                output_width)

  def transfer_weights(self, layer, weights, new_shapes, selection):
    values = super().transfer_weights(layer, weights, new_shapes, selection)
    kept = len(selection.output_indices)
    if not kept or kept == selection.output_channels:
      return values
    factor = np.sqrt(selection.output_channels / kept)
    return [value * np.asarray(factor, value.dtype)
            if variable.path.rsplit('/', 1)[-1] in self._scale_names
            else value
            for variable, value in zip(layer.weights, values)]


class FlattenRule(layer_rule.LayerRule):
  """Flatten: the input channels repeated over the spatial positions."""

  def output_space(self, node):
    if not _single_input(node):
      return node.opaque(UNKNOWN)
    shape = node.inputs[0].shape
    if len(shape) <= 2:
      return node.input_spaces[0]
    return spaces.Flattened(node.input_spaces[0],
                            int(np.prod(shape[1:-1])))


def output_rank(layer) -> int:
  """The rank of the (first) output of a called layer or operation."""
  return len(layer._inbound_nodes[0].outputs[0].shape)  # pylint: disable=protected-access


def concat_space(node: layer_rule.LayerNode, axis: int
                 ) -> spaces.ChannelSpace:
  """The output space of a concatenation along `axis` (layer or op).

  Along the channel axis the output holds the inputs' channels one after
  the other (`spaces.Concat`). Along any other axis (positions, time,
  batch) channel c of the output is channel c of every input: the inputs'
  groups merge, like an elementwise merge, and the channel count stays.
  """
  rank = len(node.outputs[0].shape)
  if layer_rule.is_channel_axis(axis, rank):
    return spaces.Concat(tuple(node.input_spaces))
  if not node.input_spaces:
    return node.opaque(UNKNOWN)
  for space in node.input_spaces[1:]:
    node.union(node.input_spaces[0], space)
  return node.input_spaces[0]


class ConcatenateRule(layer_rule.LayerRule):
  """Concatenate (see `concat_space`); along the channel axis vanished
  inputs are skipped, along another axis no input may vanish alone."""

  accepts_vanished_inputs = True

  def axis(self, layer) -> int:
    """The concatenation axis of `layer`."""
    return int(layer.axis)

  def accepts_vanished(self, layer):
    return layer_rule.is_channel_axis(self.axis(layer), output_rank(layer))

  def output_space(self, node):
    return concat_space(node, self.axis(node.layer))

  def live_output_space(self, layer, output_space, input_spaces,
                        live_input_spaces, vanished, input_channels):
    del output_space, input_spaces
    if not self.accepts_vanished(layer):
      # The inputs share their groups: they vanish together.
      return live_input_spaces[0]
    return spaces.Concat(tuple(
        spaces.Dead(channels) if gone else space
        for space, gone, channels in zip(live_input_spaces, vanished,
                                         input_channels)))


class MergeRule(layer_rule.LayerRule):
  """Elementwise merges (Subtract, Multiply, ...): their inputs share groups.

  An input with another channel count (e.g. 1 channel, broadcast) keeps its
  width. No input may vanish unless `accepts_vanished_inputs`.
  """

  def output_space(self, node):
    out_channels = node.output_channels()
    same = []
    for space, tensor in zip(node.input_spaces, node.inputs):
      if layer_rule.num_channels(tensor) == out_channels:
        same.append(space)
      else:
        node.freeze(space, 'it is broadcast by layer %s' % node.describe())
    for space in same[1:]:
      node.union(same[0], space)
    return same[0] if same else node.opaque('which broadcasts channels')


class AddRule(MergeRule):
  """Add: a vanished input is dropped; one live input passes through."""

  accepts_vanished_inputs = True

  def live_output_space(self, layer, output_space, input_spaces,
                        live_input_spaces, vanished, input_channels):
    del layer, input_spaces, input_channels
    for space, gone in zip(live_input_spaces, vanished):
      if not gone:
        return space
    return output_space


def named_rule_table() -> Dict[str, layer_rule.LayerRule]:
  """{qualified class name: rule} of MorphNet's own layers.

  Their modules import TensorFlow, which model surgery does not need: a
  `LayerRules` table finds them by the qualified name of a layer's class
  (`qualified_name`), without importing them.
  """
  # MorphNet's own gate multiplies each channel by its gate.
  return {_GATING: PassThroughRule()}


_GATING = ('morph_net.probabilistic_gating.activation_gating.'
           'LogisticSigmoidGating')


def qualified_name(layer_class: type) -> str:
  """'module.QualifiedName' of a class, as `named_rule_table` keys it."""
  return '%s.%s' % (layer_class.__module__, layer_class.__qualname__)


def _resolve(name: str) -> Optional[type]:
  """The class of a qualified name, or None if its module cannot be
  imported here (e.g. it needs TensorFlow and TensorFlow is missing)."""
  module_name, class_name = name.rsplit('.', 1)
  try:
    module = importlib.import_module(module_name)
  except ImportError:
    return None
  return getattr(module, class_name)


def builtin_rule_table() -> Dict[type, layer_rule.LayerRule]:
  """{Keras layer class: rule} for the built-in layers surgery understands.

  MorphNet's own layers (`named_rule_table`) are included when their
  modules import here (this imports them; `LayerRules` does not).
  """
  table = keras_rule_table()
  for name, rule in named_rule_table().items():
    layer_class = _resolve(name)
    if layer_class is not None:
      table[layer_class] = rule
  return table


def keras_rule_table() -> Dict[type, layer_rule.LayerRule]:
  """{Keras layer class: rule} of the Keras 3 built-in layers."""
  table = {}
  for cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    table[cls] = WidthRule('filters')
  for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    table[cls] = WidthRule('filters', input_axis=-1, output_axis=-2)
  for cls in (L.SeparableConv1D, L.SeparableConv2D):
    table[cls] = SeparableConvRule('filters')
  table[L.Dense] = WidthRule('units')
  table[L.EinsumDense] = EinsumDenseRule()
  for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    table[cls] = DepthwiseRule()
  table[L.BatchNormalization] = NormalizerRule()
  pass_through = PassThroughRule()
  table[L.Softmax] = ChannelMixingRule()
  table[L.LayerNormalization] = ChannelNormRule()
  table[L.RMSNormalization] = ChannelNormRule(exact=True)
  table[L.Embedding] = EmbeddingRule()
  for cls in (
      L.Activation, L.ReLU, L.LeakyReLU, L.PReLU,
      L.ELU, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
      L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout,
      L.AlphaDropout, L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
      L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
      L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
      L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
      L.GlobalMaxPooling3D, L.ZeroPadding1D, L.ZeroPadding2D,
      L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
      L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Identity,
      L.ActivityRegularization):
    table[cls] = pass_through
  recurrent = RecurrentRule()
  for cls in (L.SimpleRNN, L.GRU, L.LSTM, L.Bidirectional):
    table[cls] = recurrent
  table[L.MultiHeadAttention] = AttentionRule()
  table[L.Reshape] = ReshapeRule()
  table[L.Flatten] = FlattenRule()
  table[L.Concatenate] = ConcatenateRule()
  table[L.Add] = AddRule()
  merge = MergeRule()
  for cls in (L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    table[cls] = merge
  return table
