"""The weights holding a hidden size's channels, without TensorFlow.

The hidden size of a model (a transformer's residual stream, an
Embedding's output: see `morph_net.keras.hidden_size`) is one channel
group of surgery's channel model. Under GroupLasso regularizers both
engines give it one regularizer, the group lasso of the weights that hold
a hidden channel; this module finds those weights from the channel model
alone (no trace), so the graph engine (`hidden_size.HiddenGroups`, on
its traced graph's tensors) and the layer-level engine
(`layer_regularizer.LayerRegularizer`, on the variables, any Keras
backend) read the same ones:

* `hidden_roots`: the hidden groups and the attention layers of each;
* `member_weights`: (variable, channel axis, factors, member) of each
  weight of a group (writers' columns and biases, normalizations' scales
  and offsets, readers' rows, a normalization whose output only readers
  see folded into their rows, see `hidden_size`);
* `member_columns`: those weights as [weights of the member per channel,
  channels] tensors, one per member, in `keras.ops`;
* `kept_member_weights`, `kept_columns`, `kept_rows`, `kept_group`: which
  entries of each member rebuild keeps with a channel (those of alive
  heads and of alive channels on the member's other side), so that both
  engines count only those (see `kept_member_weights`);
* `head_columns`: the weights of each head of a MultiHeadAttention layer
  (`morph_net.keras.attention`), in `keras.ops`;
* `grouping`: `hidden_size.GROUPING`, how the members make a channel's
  value, when that module is loaded (it needs TensorFlow), else its
  default; `gradient_scale`: `hidden_size.GRADIENT_SCALE` so.
"""

import sys
from typing import Dict, List, Optional

from keras import ops

from morph_net import errors
from morph_net.surgery import builtin_rules
from morph_net.surgery import spaces

__all__ = ['DEFAULT_GROUPING', 'GROUPINGS', 'grouping', 'check_grouping',
           'DEFAULT_GRADIENT_SCALE', 'gradient_scale', 'check_gradient_scale',
           'is_group', 'hidden_roots', 'member_weights', 'member_columns',
           'columns', 'head_columns', 'kept_member_weights', 'kept_columns',
           'kept_rows', 'kept_layout', 'kept_group']

# How a hidden channel's weights make its group-lasso value (see
# `hidden_size.GROUPING`, the switch both engines read): 'rms', one root
# mean square over every weight of the channel; 'l2', a group lasso per
# member combined by their L2 norm.
DEFAULT_GROUPING = 'rms'
GROUPINGS = ('rms', 'l2')
# The multiplier of the gradient of a hidden channel's value (see
# `hidden_size.GRADIENT_SCALE`, the switch both engines read).
DEFAULT_GRADIENT_SCALE = 1.0


def grouping() -> str:
  """`morph_net.keras.hidden_size.GROUPING` when that module is loaded (it
  imports TensorFlow, so without TensorFlow it never is), else
  `DEFAULT_GROUPING`."""
  module = sys.modules.get('morph_net.keras.hidden_size')
  return DEFAULT_GROUPING if module is None else module.GROUPING


def check_grouping(value, layers) -> str:
  """`value` when it is one of `GROUPINGS`.

  Args:
    value: a grouping.
    layers: the names of the layers of the hidden size it is for (named
      by the error).

  Returns:
    `value`.

  Raises:
    InvalidArgumentError: for another value.
  """
  if value not in GROUPINGS:
    raise errors.InvalidArgumentError(
        'hidden_size.GROUPING is %r; expected one of %s (hidden size of '
        'layer(s) %s).' % (value, list(GROUPINGS), ', '.join(
            repr(n) for n in layers)))
  return value


def gradient_scale() -> float:
  """`morph_net.keras.hidden_size.GRADIENT_SCALE` when that module is
  loaded, else `DEFAULT_GRADIENT_SCALE` (as `grouping`)."""
  module = sys.modules.get('morph_net.keras.hidden_size')
  return DEFAULT_GRADIENT_SCALE if module is None else module.GRADIENT_SCALE


def check_gradient_scale(value, layers) -> float:
  """`value` as a float when it is a finite number > 0.

  Args:
    value: a gradient scale.
    layers: the names of the layers of the hidden size it is for (named
      by the error).

  Returns:
    `float(value)`.

  Raises:
    InvalidArgumentError: for another value.
  """
  try:
    number = float(value)
  except (TypeError, ValueError):
    number = None
  if isinstance(value, bool) or number is None or not (
      0.0 < number < float('inf')):
    raise errors.InvalidArgumentError(
        'hidden_size.GRADIENT_SCALE is %r; expected a finite number > 0, '
        'e.g. 1.0, MorphNet\'s (hidden size of layer(s) %s).' % (
            value, ', '.join(repr(n) for n in layers)))
  return number


def is_group(space, root, table) -> bool:
  return isinstance(space, spaces.Group) and table.find(space.gid) == root


# Layers between a normalization and the layers reading its output that are
# linear per channel (at inference), so a scale or offset passes through
# them unchanged: w . pool(gamma x + beta) = (w gamma) . pool(x) + w beta.
_LINEAR_PER_CHANNEL = (
    builtin_rules.L.Dropout, builtin_rules.L.SpatialDropout1D,
    builtin_rules.L.SpatialDropout2D, builtin_rules.L.SpatialDropout3D,
    builtin_rules.L.GlobalAveragePooling1D,
    builtin_rules.L.GlobalAveragePooling2D,
    builtin_rules.L.GlobalAveragePooling3D, builtin_rules.L.AveragePooling1D,
    builtin_rules.L.AveragePooling2D, builtin_rules.L.AveragePooling3D,
    builtin_rules.L.Identity)


def _reader_rows(channels, layer, inputs, root):
  """[(kernel, row axis, input position)] of `layer` reading the channels
  of group `root` (a Dense/conv's rows, an attention layer's projections),
  or None for a layer that is not such a reader."""
  table = channels.table
  rule = channels.rule(layer)
  if isinstance(rule, builtin_rules.AttentionRule):
    positions = builtin_rules.attention_input_positions(layer)
    if positions is None:
      return None
    dense = (layer._query_dense, layer._value_dense, layer._key_dense)  # pylint: disable=protected-access
    return [(d.kernel, 0, p) for d, p in zip(dense, positions)
            if p < len(inputs) and is_group(channels.space[id(inputs[p])],
                                               root, table)]
  if (type(rule) is builtin_rules.WidthRule and  # pylint: disable=unidiomatic-typecheck
      getattr(layer, 'groups', 1) == 1 and inputs and
      is_group(channels.space[id(inputs[0])], root, table)):
    return [(layer.kernel, rule._input_axis, 0)]  # pylint: disable=protected-access
  return None


def _norm_factors(layer, size):
  """(scales, offsets): the per-channel trainable weights of a
  normalization layer, told by name (gamma/scale multiply, beta adds), or
  None when one is neither."""
  scales, offsets = [], []
  for v in getattr(layer, 'trainable_weights', None) or []:
    if len(v.shape) < 1 or int(v.shape[-1]) != size:
      continue
    kind = v.path.rsplit('/', 1)[-1]
    if kind in ('gamma', 'scale'):
      scales.append(v)
    elif kind == 'beta':
      offsets.append(v)
    else:
      return None
  return scales, offsets


def _folded_norms(channels, root):
  """{(id(reader layer), input position): (scales, offsets)} of the
  normalizations of group `root` whose output reaches only readers (through
  layers linear per channel), with the normalization names.

  A normalization's scale and offset act on the hidden channel only
  through those readers: what the readers see of channel c is their rows
  times gamma_c (and times beta_c), so the group's norm counts those
  products, not gamma and the rows apart (a scale of 1 kept by the data
  loss, 5 per channel in a 2-block pre-norm encoder, held the group's norm
  far above the threshold while every product could shrink).
  """
  size = channels.table.size(root)
  consumers, node_count = {}, {}
  for node in channels.nodes:
    layer, inputs, _ = node
    node_count[layer.name] = node_count.get(layer.name, 0) + 1
    for position, tensor in enumerate(inputs):
      consumers.setdefault(id(tensor), []).append((node, position))
  folded, names = {}, []
  for layer, inputs, outputs in channels.nodes:
    rule = channels.rule(layer)
    out = channels.layer_out.get(layer.name)
    if (rule.width_attribute is not None or len(inputs) != 1 or
        len(outputs) != 1 or node_count[layer.name] != 1 or
        not is_group(out, root, channels.table) or
        not is_group(channels.space[id(inputs[0])], root, channels.table)):
      continue
    factors = _norm_factors(layer, size)
    if not factors or not (factors[0] or factors[1]):
      continue
    readers, frontier, ok = [], [outputs[0]], True
    while frontier and ok:
      tensor = frontier.pop()
      for (user, user_inputs, user_outputs), position in consumers.get(
          id(tensor), []):
        if node_count[user.name] != 1:
          ok = False
        elif isinstance(user, _LINEAR_PER_CHANNEL) and len(user_outputs) == 1:
          frontier.append(user_outputs[0])
        else:
          # The projections reading this tensor (a self-attention call
          # holds it twice, its query, key and value all at position 0).
          rows = [p for _, _, p in _reader_rows(
              channels, user, user_inputs, root) or []
                  if user_inputs[p] is user_inputs[position]]
          if not rows:
            ok = False
          readers.extend((id(user), p) for p in rows)
      if not consumers.get(id(tensor)):
        ok = False  # A model output: the scale reaches it directly.
    if ok and readers:
      names.append(layer.name)
      for key in readers:
        folded[key] = factors
  return folded, names


def member_weights(channels, root):
  """[(variable, channel axis, factors, member)] of the weights holding
  the channels of group `root`: writers' columns and biases,
  normalizations' trainable per-channel weights, readers' rows; a
  normalization whose output only readers see is counted through them
  (`factors`: the per-channel variables a member is multiplied by, see
  `_folded_norms`). `member` names the op regularizer the weights belong
  to: a writer's columns with its bias, one reader kernel's rows (times
  the folded scale and offset), one normalization's scale and offset."""
  return [entry[:4] for entry in kept_member_weights(channels, root)]


def kept_member_weights(channels, root):
  """`member_weights` with which entries rebuild keeps: [(variable,
  channel axis, factors, member, kept)].

  `kept` is None (every entry of the variable is kept with a channel) or
  (axis, key) for a variable whose entries along `axis` are the heads or
  channels on the other side of the member, kept when their alive vector
  says so (`kept_group` names their group): ('heads', attention layer
  name) for the query, key and value kernels' head axis and the output
  projection's head rows; ('out', layer name) for a reader's kernel (its
  output channels, e.g. the first FFN Dense's units); ('in', layer name)
  for a writer's kernel (its input channels, e.g. the second FFN Dense's
  rows). Rebuild removes the other entries, so a fresh regularizer on the
  rebuilt model counts only these.

  Args:
    channels: the channel model.
    root: the group root.

  Returns:
    The list, in `member_weights`' order.
  """
  table = channels.table
  size = table.size(root)
  folded, folded_names = _folded_norms(channels, root)
  found = []

  def add_rows(layer, kernel, axis, position, kept):
    member = ('rows', id(kernel))
    factors = folded.get((id(layer), position))
    if factors is None:
      found.append((kernel, axis, (), member, kept))
      return
    scales, offsets = factors
    if scales:
      found.append((kernel, axis, tuple(scales), member, kept))
    for offset in offsets:
      found.append((kernel, axis, (offset,), member, kept))

  for name, layer in channels.layers.items():
    rule = channels.rule(layer)
    out = channels.layer_out.get(name)
    ins = channels.layer_in.get(name) or []
    if isinstance(rule, builtin_rules.AttentionRule):
      positions = builtin_rules.attention_input_positions(layer)
      if positions is None:
        continue
      heads = ('heads', name)
      dense = (layer._query_dense, layer._value_dense, layer._key_dense)  # pylint: disable=protected-access
      for d, p in zip(dense, positions):
        if is_group(ins[p], root, table):
          # (channels, heads, key_dim or value_dim).
          add_rows(layer, d.kernel, 0, p, (1, heads))
      if is_group(out, root, table):
        output = layer._output_dense  # pylint: disable=protected-access
        member = ('columns', id(output.kernel))
        # (heads, value_dim, channels).
        found.append((output.kernel, -1, (), member, (0, heads)))
        if output.bias is not None:
          found.append((output.bias, -1, (), member, None))
      continue
    if isinstance(rule, builtin_rules.EmbeddingRule):
      if is_group(out, root, table):
        found.append((layer.embeddings, -1, (),
                      ('columns', id(layer.embeddings)), None))
      continue
    if isinstance(rule, builtin_rules.WidthRule) and type(rule) is (  # pylint: disable=unidiomatic-typecheck
        builtin_rules.WidthRule) and getattr(layer, 'groups', 1) == 1:
      input_axis = rule._input_axis  # pylint: disable=protected-access
      output_axis = rule._output_axis  # pylint: disable=protected-access
      if is_group(out, root, table):
        member = ('columns', id(layer.kernel))
        found.append((layer.kernel, output_axis, (), member,
                      (input_axis, ('in', name))))
        if getattr(layer, 'bias', None) is not None:
          found.append((layer.bias, -1, (), member, None))
      if ins and is_group(ins[0], root, table):
        add_rows(layer, layer.kernel, input_axis, 0,
                 (output_axis, ('out', name)))
      continue
    if rule.width_attribute is None and is_group(out, root, table) and (
        len(ins) == 1 and is_group(ins[0], root, table)) and (
            name not in folded_names):
      # A pass-through layer (a normalization): its per-channel weights.
      found.extend((v, -1, (), ('norm', name), None)
                   for v in layer.trainable_weights
                   if len(v.shape) >= 1 and int(v.shape[-1]) == size)
  return found


def kept_group(channels, key) -> Optional[int]:
  """The group root whose alive vector says which entries a `kept` key of
  `kept_member_weights` keeps, or None (no group: every entry is kept).

  ('heads', name): the group of the attention layer's heads. ('out',
  name): the group of the layer's output channels. ('in', name): the
  group of its input channels.

  Args:
    channels: the channel model.
    key: the key.

  Returns:
    The root, or None.
  """
  kind, name = key
  if kind == 'heads':
    return channels.group_of(name) if name in set(
        channels.source_layers()) else None
  if kind == 'out':
    space = channels.layer_out.get(name)
  else:
    space = (channels.layer_in.get(name) or [None])[0]
  if not isinstance(space, spaces.Group):
    return None
  return channels.table.find(space.gid)


def kept_rows(shape, axis: int, kept_axis: int, alive):
  """Which entries of a channel's column rebuild keeps, float32 1 or 0.

  Args:
    shape: the variable's shape.
    axis: its channel axis (the member's channels).
    kept_axis: the axis of its entries that `alive` keeps.
    alive: a bool (or 0/1) vector over `shape[kept_axis]`.

  Returns:
    A float32 vector over the entries of one channel, in the order
    `columns` lays them out (the variable's axes but `axis`, in order).
  """
  view, column_shape = kept_layout(shape, axis, kept_axis)
  kept = ops.reshape(ops.cast(alive, 'float32'), view)
  return ops.reshape(ops.broadcast_to(kept, column_shape), [-1])


def kept_layout(shape, axis: int, kept_axis: int):
  """(view, column shape): `alive` reshaped to `view` and broadcast to
  `column shape` lays the kept flags over one channel's entries (the
  variable's axes but `axis`, in order); `kept_rows` and the graph
  engine's TensorFlow version apply it.

  Args:
    shape: the variable's shape.
    axis: its channel axis.
    kept_axis: the axis whose entries `alive` keeps.

  Returns:
    (list of ints, -1 at `kept_axis`'s place; list of ints).
  """
  rank = len(shape)
  axis, kept_axis = axis % rank, kept_axis % rank
  rest = [a for a in range(rank) if a != axis]
  view = [1] * len(rest)
  view[rest.index(kept_axis)] = -1
  return view, [int(shape[a]) for a in rest]


def hidden_roots(channels) -> Dict[int, List[str]]:
  """{group root: sorted names of its attention layers} of the hidden
  sizes of a channel model: an Embedding's output, and the inputs and
  output of a MultiHeadAttention whose heads are a group (a width-taking
  layer of the channel model)."""
  table = channels.table
  sources = set(channels.source_layers())
  roots = {}
  for name, layer in channels.layers.items():
    rule = channels.rule(layer)
    if isinstance(rule, builtin_rules.EmbeddingRule):
      for gid in channels.layer_out[name].group_ids(table):
        roots.setdefault(table.find(gid), set())
    elif isinstance(rule, builtin_rules.AttentionRule) and name in sources:
      for space in [channels.layer_out[name]] + list(
          channels.layer_in.get(name) or []):
        for gid in space.group_ids(table):
          roots.setdefault(table.find(gid), set()).add(name)
  return {root: sorted(names) for root, names in sorted(roots.items())}


def _value(variable, read):
  value = ops.convert_to_tensor(variable) if read is None else read(variable)
  return None if value is None else ops.cast(value, 'float32')


def member_columns(channels, root, read=None) -> Optional[List]:
  """The weights holding each channel of a hidden group, per member.

  `hidden_size.hidden_member_weights` in `keras.ops`: a member is a
  writer's columns with its bias, one reader kernel's rows (times the
  scale and the offset of a normalization folded into it), a
  normalization's scale and offset (`member_weights`).

  Args:
    channels: the channel model.
    root: the group root.
    read: maps a Keras variable to a tensor of its value, or None when it
      cannot be read (default: the variable's value).

  Returns:
    A list of [weights of the member per channel, channels] float32
    tensors, in member order, or None when a variable cannot be read (or
    the group holds none).
  """
  return columns(member_weights(channels, root), channels.table.size(root),
                 read)


def columns(found, size: int, read=None) -> Optional[List]:
  """`member_columns` of the weights `found` (`member_weights` or
  `kept_member_weights` of a group of `size` channels, listed once and read
  at every call)."""
  parts = kept_columns(found, size, read)
  return None if parts is None else [part for part, _ in parts]


def kept_columns(found, size: int, read=None, alive=None) -> Optional[List]:
  """`columns`, each member with the entries rebuild keeps.

  Args:
    found: `kept_member_weights` of a group of `size` channels (entries
      without a `kept` item keep every entry).
    size: the group's channels.
    read: maps a Keras variable to a tensor of its value, or None when it
      cannot be read (default: the variable's value).
    alive: maps a `kept` key to the bool alive vector of what it names, or
      None when every entry is kept (default: every entry is kept).

  Returns:
    [(weights, kept)] per member, in member order: weights a [weights of
    the member per channel, channels] float32 tensor, kept None (every
    entry kept: no key named an alive vector) or its [weights of the member
    per channel] float32 1/0 vector; or None when a variable cannot be read
    (or the group holds none).
  """
  members, seen = {}, set()
  masked = False
  for entry in found:
    variable, axis, factors, member = entry[:4]
    kept = entry[4] if len(entry) > 4 else None
    key = (id(variable), axis, tuple(id(f) for f in factors))
    if key in seen:
      continue
    seen.add(key)
    value = _value(variable, read)
    if value is None:
      return None
    part = ops.reshape(ops.moveaxis(value, axis, -1), [-1, size])
    for factor in factors:
      factor_value = _value(factor, read)
      if factor_value is None:
        return None
      part = part * ops.reshape(factor_value, [1, size])
    shape = tuple(value.shape)
    vector = None if kept is None or alive is None else alive(kept[1])
    if vector is not None and (
        int(vector.shape[-1]) == int(shape[kept[0] % len(shape)])):
      masked = True
      rows = kept_rows(shape, axis, kept[0], vector)
    else:
      rows = ops.ones([int(part.shape[0])], 'float32')
    members.setdefault(member, []).append((part, rows))
  if not members:
    return None
  return [(ops.concatenate([p for p, _ in parts], axis=0),
           ops.concatenate([r for _, r in parts], axis=0)
           if masked else None)
          for parts in members.values()]


def head_columns(layer, read=None):
  """The weights of each head of an attention layer, one column per head.

  Column h holds head h's query, key and value kernel columns and biases
  and its rows of the output projection: the weights that die with it
  (`builtin_rules.attention_head_axes`).

  Args:
    layer: a MultiHeadAttention layer whose heads rebuild removes
      (`builtin_rules.attention_heads`).
    read: maps a Keras variable to a tensor of its value, or None when it
      cannot be read (default: the variable's value).

  Returns:
    A [weights per head, heads] float32 tensor, or None for another layer
    or a variable that cannot be read.
  """
  heads = builtin_rules.attention_heads(layer)
  if heads is None:
    return None
  parts = []
  for variable, axis in builtin_rules.attention_head_axes(layer):
    value = _value(variable, read)
    if value is None:
      return None
    parts.append(ops.reshape(ops.moveaxis(value, axis, 0), [heads, -1]))
  return ops.transpose(ops.concatenate(parts, axis=1))
