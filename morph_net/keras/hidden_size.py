"""The hidden size of a traced Keras model: one channel group, pruned.

The residual stream of a transformer encoder is one channel group of
surgery's channel model: the Embedding output (or the input projection),
every residual Add, the LayerNormalization / RMSNormalization layers, the
rows of the MultiHeadAttention query, key and value projections and the
columns of its output projection (default `output_shape`: as many
channels as the query), the first FFN Dense's rows and the second one's
columns, the pooling and the head's rows. Without a transformer, an
Embedding's output width is such a group too, with the rows of the layer
reading it (a Conv1D, a Dense).

The graph analysis cannot give that group a source by itself: an
Embedding is a gather (a leaf op) and the attention layer is cut out of
the analysis when its heads are pruned (`morph_net.keras.attention`). So
under GroupLasso regularizers (of FLOPs or model size when the group holds
an attention layer, whose cost is counted from config) the bridge makes
the embedding's gather and the attention layer's output op sources of the
group (through `op_handlers.custom_handler_scope`, as the units of a
recurrent layer), and after the analysis gives every op group of the
stream one regularizer (`HiddenGroups.override`), the group lasso of the
weights that hold a hidden channel: the writers' columns with their
biases (embedding, Dense, the attention output projection), the
normalizations' scales and offsets (a centred layer norm outputs
-mean x gamma / sigma + beta on a channel whose input is zero, so a
channel is removable only when its gamma and beta are zero too) and each
reader kernel's rows (a Dense, an attention query, key or value
projection). `GROUPING` says how they make the channel's value:
'rms' (default), one root mean square over all of them together (plus an
L1 part with `l1_fraction`), written like the heads' and the units';
'l2', as the original MorphNet does for a channel group of several ops,
one group lasso per member op combined by their L2 norm
(`grouping_regularizers.L2GroupingRegularizer`; a channel is alive above
the threshold, so a dead channel has every member below it). 'rms'
weighs each member by its weight count (the patch embedding's 17 among a
ViT channel's 853). Either way a member counts only the entries rebuild
keeps (`hidden_members.kept_member_weights`): a kernel's entries of alive
heads (the query, key and value kernels' head axis, the output
projection's head rows) and of alive channels on its other side (a
reader's output channels, e.g. the first FFN Dense's units; a writer's
input channels, e.g. the second FFN Dense's rows), each member's (or,
under 'rms', the channel's) mean taken over them, as a fresh regularizer
on the rebuilt model takes it. Counted over every entry, a channel held
only by dead units' rows of the second FFN Dense (or a dead head's output
rows) was alive and had no weights after rebuild: on a ViT, one hidden
channel fewer than predicted. Those alive vectors are the regularizers'
after the analysis (`override`; a group that would disconnect an output
with its `min_channels`); those of other hidden groups are not used (the
values would be circular), and a unit's or head's own value still counts
the rows of dead hidden channels (docs/MODERN_KERAS.md, "Counting only
the weights rebuild keeps"). The layer-level engine counts the same
entries (`layer_regularizer.LayerRegularizer`). `GRADIENT_SCALE`
multiplies the gradient of the group's values (not the values). A
normalization whose output only readers see (directly or through
dropout and average pooling: a pre-norm transformer's norms, the final
norm before the pooling) counts through them instead: the readers' rows times its scale,
and times its offset, the weights the readers apply to the channel.
Counted apart, its scale (1 at initialization, and held there by the data
loss as long as anything reads the channel) dominated the group's norm:
in a 2-block pre-norm ViT the five scales of 1 kept every hidden channel
9 to 10 times above the threshold while the products shrank like the FFN
units' weights. A norm whose output is the stream itself (post-norm) still
counts its scale and offset as they are. A channel is alive above the
threshold. A recurrent layer writing the group with its units pruned
(`morph_net.keras.recurrent`; one copy of the units per output: not a
Bidirectional concatenation) is a writer too: its unit weights are a
member, and its output ops take the group's regularizer, so its units and
the hidden channels are one alive vector, as they are one width in
rebuild. `alive_counts()` lists every width-taking
member with the group's alive count (the Embedding under its name, as the
Dense layers of an Add group are listed today); rebuild narrows every
member (`builtin_rules.EmbeddingRule`, `AttentionRule`, `ChannelNormRule`).

The cost needs nothing new: the Dense layers reading and writing the
stream are costed by the graph analysis from the group's alive count, the
attention layers from config with the alive query, key, value and output
channels (`attention.AttentionCall.per_head`), and the embedding lookup is
not costed (a gather holds no FLOPs; a model size does not count the
embedding table, as before).

Normalizations over the channels and narrowing: a channel whose input is
zero still counts in the statistics over d channels. Rebuild keeps them
per channel (epsilon x d / d', scale x sqrt(d / d'), see
`builtin_rules.ChannelNormRule`):

* `RMSNormalization` (mean of squares): exact, up to float rounding
  (measured: below 1e-6 on the outputs of one- and two-block encoders;
  the tests assert 1e-5).
* `LayerNormalization` subtracts the mean over the channels (and its
  variance holds the squared mean); `rms_scaling=True`, deprecated in
  Keras 3, divides by that centred variance too. With s^2 and m' the
  variance and the mean of the d' channels left at one position, the
  original divides by (d'/d) s^2 + (d'/d)(1 - d'/d) m'^2 and subtracts
  (d'/d) m'; no per-channel scale or epsilon gives both. The correction
  is exact when m' = 0 at every position, and otherwise leaves errors of
  the order of m' / s: on the tests' encoders (2 of 8 channels removed)
  at most 0.156 (one block, outputs up to 1.58) and 0.366 (two blocks,
  outputs up to 1.09), against 0.207 and 0.325 for gamma and beta only
  sliced. The cost is exact either way; the folding warning names each
  layer norm that lost channels. A model that must rebuild exactly
  should use RMSNormalization, or fine-tune after rebuilding.

Folding (`morph_net.surgery.folding`) does not fold a layer norm's error
into the next Dense: that error varies with the input (a folded constant
measured on one sample made the encoders' outputs worse).

Other families (Gamma, LogisticSigmoid) and GroupLasso regularizers of
other resources keep the hidden size at its width (a hidden channel has no
batch-norm scale or gate of its own): one warning names the layers, and
their channel groups are not regularized.
"""

import contextlib
import dataclasses
import logging
from typing import Dict, List, Optional

import tensorflow as tf

from morph_net import errors
from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import grouping_regularizers
from morph_net.framework import minimum_alive_regularizer
from morph_net.framework import op_vocabulary
from morph_net.keras import hidden_members
from morph_net.keras import recurrent
from morph_net.op_handlers import op_handlers
from morph_net.op_regularizers import group_lasso_regularizer
from morph_net.surgery import builtin_rules

__all__ = ['GROUPING', 'HiddenGroup', 'HiddenGroups',
           'hidden_member_weights', 'hidden_weights']

# How a hidden channel's weights make its group-lasso value, read when a
# regularizer is built: 'rms', one root mean square over every weight of
# the channel (the default); 'l2', a group lasso per member op combined by
# their L2 norm (`L2GroupingRegularizer`). Both count only the entries
# rebuild keeps (docs/MODERN_KERAS.md, "Counting only the weights rebuild
# keeps").
GROUPING = 'rms'
_GROUPINGS = ('rms', 'l2')

# The multiplier of the gradient of a hidden channel's value in the
# regularization term (and the rescue term), read when a regularizer is
# built; the values, the alive channels and the cost do not change. 1 (the
# default): MorphNet's. Under Adam a group's weights move against the data
# loss's gradient in proportion to the term's gradient on each of them,
# cost_c x w / (n_c x value) for a group of n_c weights: a ViT hidden
# channel (853 weights, 3 to 8 FFN units' FLOPs) was pushed, against the
# data loss, 5 to 10 times less than an FFN unit (48 weights), and kept
# its width at half the FLOPs; with 16 it was pruned (48 -> 29, exact),
# at 3 points of accuracy (docs/MODERN_KERAS.md, "Per-weight pressure").
# Both engines read it (`hidden_members.gradient_scale`).
GRADIENT_SCALE = 1.0

# The ops reading a Dense's or convolution's kernel: their regularizer is
# that of the layer's output channels (as `alive_counts()` reads them).
_KERNEL_OP_TYPES = (op_vocabulary.CONV_OP_TYPES |
                    op_vocabulary.CONV_TRANSPOSE_OP_TYPES |
                    op_vocabulary.MATMUL_OP_TYPES)


@dataclasses.dataclass
class HiddenGroup:
  """One hidden-size channel group of the channel model.

  Attributes:
    root: its group root in the channel model.
    size: its channels.
    layers: the width-taking layers of the group (those a structure
      names), in run order.
    members: every layer writing, normalizing or reading the group.
    embeddings: the Embedding layers writing it.
    attention: the MultiHeadAttention layers reading or writing it.
    source_ops: the ops made sources of the group (embedding gathers,
      attention output ops).
    pruned: whether it is pruned (see `HiddenGroups.plan`).
  """
  root: int
  size: int
  layers: List[str]
  members: List[str]
  embeddings: List[str]
  attention: List[str]
  source_ops: List[tf.Operation] = dataclasses.field(default_factory=list)
  pruned: bool = False


class _KeptGroupLasso(group_lasso_regularizer.GroupLassoRegularizer):
  """A group lasso of [entries, channels] weights over the entries kept.

  The root mean square (and mean absolute value) of each channel's kept
  entries, `kept` a [entries] float vector of 1 (kept) and 0: what a
  fresh regularizer on the rebuilt model computes over the entries
  rebuild leaves. No entry kept gives 0.

  Args:
    weights: [entries, channels] float32 weights.
    kept: [entries] float32, 1 where an entry is kept.
    threshold: channels at or below it are dead.
    l1_fraction: weight of the L1 part, in [0, 1].
  """

  def __init__(self, weights, kept, threshold, l1_fraction):
    self._kept = tf.reshape(tf.cast(kept, tf.float32), [-1, 1])
    super().__init__(weight_tensor=weights, reduce_dims=[0],
                     threshold=threshold, l1_fraction=l1_fraction)

  def _means(self):
    count = tf.maximum(tf.reduce_sum(self._kept), 1.0)
    squares = tf.reduce_sum(self._kept * tf.square(self._weights),
                            axis=0) / count
    absolutes = (tf.reduce_sum(self._kept * tf.abs(self._weights),
                               axis=0) / count
                 if self._l1_fraction else None)
    return squares, absolutes


class _ScaledGradient(minimum_alive_regularizer.AliveVectorRegularizer):
  """`regularizer` whose regularization vector's gradient is multiplied by
  `scale`; its values and alive vector are unchanged (see
  `GRADIENT_SCALE`).

  The vector is v + (scale - 1) (v - stop_gradient(v)): the difference is
  exactly 0, so the values are v's, bit for bit.

  Args:
    regularizer: an OpRegularizer.
    scale: the gradient's multiplier.
  """

  def __init__(self, regularizer, scale: float):
    super().__init__(regularizer, regularizer.alive_vector)
    vector = regularizer.regularization_vector
    self._vector = vector + (scale - 1.0) * (
        vector - tf.stop_gradient(vector))

  @property
  def regularization_vector(self):
    return self._vector


# The channel structure of a hidden group, shared with the layer-level
# engine (TensorFlow-free: `morph_net.keras.hidden_members`).
_is_group = hidden_members.is_group
_member_weights = hidden_members.member_weights


def _members(channels, root, read, alive=None):
  """[(weights, kept)] per member of group `root` (`hidden_members.
  kept_columns` in TensorFlow), or None when a variable cannot be read (or
  the group holds none). `alive` maps a `kept` key of
  `hidden_members.kept_member_weights` to a bool vector (None: every entry
  kept); `kept` is None for every member when no key named one."""
  size = channels.table.size(root)
  members, seen = {}, set()
  masked = False
  for variable, axis, factors, member, kept in (
      hidden_members.kept_member_weights(channels, root)):
    key = (id(variable), axis, tuple(id(f) for f in factors))
    if key in seen:
      continue
    seen.add(key)
    value = read(variable)
    if value is None:
      return None
    value = tf.cast(value, tf.float32)
    rank = value.shape.rank
    axis = axis % rank
    perm = [a for a in range(rank) if a != axis] + [axis]
    part = tf.reshape(tf.transpose(value, perm), [-1, size])
    for factor in factors:
      factor_value = read(factor)
      if factor_value is None:
        return None
      part = part * tf.reshape(tf.cast(factor_value, tf.float32), [1, size])
    vector = None if kept is None or alive is None else alive(kept[1])
    if vector is not None and (
        int(vector.shape[-1]) == int(value.shape[kept[0] % rank])):
      masked = True
      rows = _kept_rows(value.shape.as_list(), axis, kept[0], vector)
    else:
      rows = tf.ones([int(part.shape[0])], tf.float32)
    members.setdefault(member, []).append((part, rows))
  if not members:
    return None
  return [(tf.concat([p for p, _ in parts], axis=0),
           tf.concat([r for _, r in parts], axis=0) if masked else None)
          for parts in members.values()]


def _kept_rows(shape, axis, kept_axis, alive):
  """`hidden_members.kept_rows` in TensorFlow."""
  view, column_shape = hidden_members.kept_layout(shape, axis, kept_axis)
  kept = tf.reshape(tf.cast(alive, tf.float32), view)
  return tf.reshape(tf.broadcast_to(kept, column_shape), [-1])


def hidden_member_weights(channels, root,
                          read) -> Optional[List[tf.Tensor]]:
  """The weights holding each channel of a hidden group, per member.

  A member is what the original MorphNet gives one op regularizer: a
  writer's columns with its bias (the embedding, a Dense or convolution,
  the attention output projection), one reader kernel's rows (a Dense,
  an attention query, key or value projection; times the scale and the
  offset of a normalization folded into it), a normalization's scale and
  offset.

  Every entry of a member is listed, those of dead heads and units too;
  the group's regularizer counts only the entries rebuild keeps (see
  `HiddenGroups._alive`).

  Args:
    channels: the channel model.
    root: the group root.
    read: maps a Keras variable to a tensor of its value (or None).

  Returns:
    A list of [weights of the member per channel, channels] float32
    tensors, in member order, or None when a variable cannot be read (or
    the group holds none).
  """
  members = _members(channels, root, read)
  return None if members is None else [w for w, _ in members]


def hidden_weights(channels, root, read) -> Optional[tf.Tensor]:
  """The weights holding each channel of a hidden group, one column each.

  Args:
    channels: the channel model.
    root: the group root.
    read: maps a Keras variable to a tensor of its value (or None).

  Returns:
    A [weights per channel, channels] float32 tensor (every member's
    weights, see `hidden_member_weights`), or None when a variable cannot
    be read (or the group holds none).
  """
  members = hidden_member_weights(channels, root, read)
  return None if members is None else tf.concat(members, axis=0)


class HiddenGroups(object):
  """The hidden-size groups of a traced model.

  Args:
    traced: a `tracing.TracedModel`.
    channels: its channel model (None: nothing to do).
    attention_calls: its `attention.AttentionCalls`.
    recurrent_calls: its `recurrent.RecurrentCalls` (None: none). A
      recurrent layer writing a pruned group with its units pruned (a GRU
      before an attention layer) is one of the group's writers: its unit
      weights join the group's value and its output ops take the group's
      regularizer, so its units and the group's channels are one alive
      vector (they are one width in rebuild).
  """

  def __init__(self, traced, channels, attention_calls,
               recurrent_calls=None):
    self._traced = traced
    self._channels = channels
    self._attention = attention_calls
    self._recurrent = recurrent_calls
    self._settings = None
    self._regularizers = {}  # root -> OpRegularizer.
    self._masked = set()  # Roots whose regularizer counts kept entries.
    self.groups: Dict[int, HiddenGroup] = {}
    if channels is None:
      return
    table = channels.table
    roots = {}
    for name, layer in channels.layers.items():
      rule = channels.rule(layer)
      if isinstance(rule, builtin_rules.EmbeddingRule):
        for gid in channels.layer_out[name].group_ids(table):
          roots.setdefault(gid, set())
      elif isinstance(rule, builtin_rules.AttentionRule) and (
          name in channels.source_layers()):
        for space in [channels.layer_out[name]] + list(
            channels.layer_in.get(name) or []):
          for gid in space.group_ids(table):
            roots.setdefault(gid, set()).add(name)
    sources = set(channels.source_layers())
    for root in sorted(roots):
      members, width_layers, embeddings = [], [], []
      for name in channels.layers:
        spaces_of = [channels.layer_out.get(name)] + list(
            channels.layer_in.get(name) or [])
        if not any(s is not None and _is_group(s, root, table)
                   for s in spaces_of):
          continue
        members.append(name)
        if isinstance(channels.rule(name), builtin_rules.EmbeddingRule):
          embeddings.append(name)
        if (name in sources and not isinstance(
            channels.rule(name), builtin_rules.AttentionRule) and
            _is_group(channels.layer_out[name], root, table)):
          width_layers.append(name)
      self.groups[root] = HiddenGroup(root, table.size(root), width_layers,
                                      members, embeddings,
                                      sorted(roots[root]))

  def _embedding_ops(self, names) -> List[tf.Operation]:
    """The output ops of the calls of the Embedding layers `names`."""
    if not names:
      return []
    layers = {n: self._channels.layers[n] for n in names}
    forward = set(self._traced.forward_ops())
    ops = []
    for _, scope_ops in recurrent.layer_scopes(self._traced,
                                               layers).items():
      ops.extend(recurrent.scope_outputs(scope_ops, self._traced.output_ops,
                                         forward))
    return ops

  def plan(self, regularizer_class, regularizer_kwargs, excluded,
           min_channels: int = 1):
    """Decides which hidden groups are pruned, before the analysis.

    A group is pruned under GroupLasso regularizers when every attention
    layer reading or writing it has its heads pruned (FLOPs and model
    size), and it can change width (not frozen, no model output). Other
    groups with a width keep it: one warning names their layers, and their
    ops join the excluded ops.

    Args:
      regularizer_class: the network regularizer class.
      regularizer_kwargs: its arguments (threshold, l1_fraction ...).
      excluded: the `regularizable.ExcludedOps` of the model.
      min_channels: channels kept alive in a group whose removal would
        disconnect a model output.

    Returns:
      The excluded ops, extended for the groups keeping their width.
    """
    channels = self._channels
    if channels is None or not self.groups:
      return excluded
    outputs = channels.output_groups()
    pruned_calls = {}
    for call in self._attention.pruned_calls():
      pruned_calls.setdefault(call.name, []).append(call)
    forward = set(self._traced.forward_ops())
    kept, candidates = [], []
    for group in self.groups.values():
      if (channels.table.frozen_reasons(group.root) or
          group.root in outputs):
        continue  # Excluded already (`regularizable.fixed_width_layers`).
      attention_ok = all(n in pruned_calls for n in group.attention)
      if not recurrent.is_group_lasso(regularizer_class) or (
          not attention_ok):
        kept.append(group)
      else:
        candidates.append(group)
    if candidates:
      self._settings = recurrent.layer_source_settings(
          regularizer_class, regularizer_kwargs, channels, min_channels)
    graph = self._traced.graph
    for group in candidates:
      with graph.as_default():
        read = lambda v: recurrent.variable_tensor(graph, v)
        weights = hidden_weights(channels, group.root, read)
        if weights is not None and any(
            w is None for w in self._unit_weights(group, read)):
          weights = None
      if weights is None:
        logging.warning(
            'Hidden size of layer(s) %s keeps its width: a weight of its '
            'layers is not read in the trace.', ', '.join(
                repr(n) for n in group.layers or group.members))
        kept.append(group)
        continue
      group.pruned = True
      group.source_ops = self._embedding_ops(group.embeddings)
      for name in group.attention:
        if not _is_group(channels.layer_out[name], group.root,
                         channels.table):
          continue
        for call in pruned_calls[name]:  # Every call of a shared layer.
          call.hidden_ops = recurrent.scope_outputs(
              call.ops, self._traced.output_ops, forward)
          group.source_ops.extend(call.hidden_ops)
    if kept:
      excluded = self._keep(kept, regularizer_class, excluded)
    return excluded

  def _keep(self, groups, regularizer_class, excluded):
    """The excluded ops extended with the ops of `groups`' layers."""
    channels = excluded.channels
    family = getattr(regularizer_class, '__name__', regularizer_class)
    layers = dict(excluded.layers)
    named = []
    for group in groups:
      for name in group.members:
        out = channels.layer_out.get(name)
        if out is None or not _is_group(out, group.root, channels.table):
          continue
        layers.setdefault(name, (
            'it is in the hidden size of a transformer or an embedding '
            'output, which keeps its width under %s' % family))
        if name in group.layers:
          named.append(name)
    why = ('a hidden channel has no batch-norm scale or gate of its own; '
           'only GroupLasso regularizers prune it'
           if not recurrent.is_group_lasso(regularizer_class) else
           'its attention layers keep their heads: only GroupLasso '
           'regularizers of FLOPs or model size prune them')
    names = [n for n in channels.layers if n in set(named)]
    if names:
      logging.warning(
          'Hidden size: layer(s) %s keep their width: %s regularizes no '
          'hidden size (%s).',
          ', '.join('%r (%s)' % (n, type(channels.layers[n]).__name__)
                    for n in names), family, why)
    return recurrent.keep_layers(self._traced, excluded, layers, channels)

  def pruned_groups(self) -> List[HiddenGroup]:
    return [g for g in self.groups.values() if g.pruned]

  def _regularizer(self, group, manager=None):
    """The OpRegularizer of a pruned group, made in the traced graph on
    first use (see `GROUPING`); with `manager` (the analysis done), made
    again once over the entries rebuild keeps (see `_alive`)."""
    if GROUPING not in _GROUPINGS:
      raise errors.InvalidArgumentError(
          'hidden_size.GROUPING is %r; expected one of %s (hidden size of '
          'layer(s) %s).' % (GROUPING, list(_GROUPINGS), ', '.join(
              repr(n) for n in group.layers or group.members)))
    if group.root not in self._regularizers or (
        manager is not None and group.root not in self._masked):
      graph = self._traced.graph
      read = lambda v: recurrent.variable_tensor(graph, v)
      alive = None
      if manager is not None:
        self._masked.add(group.root)
        alive = lambda key: self._alive(manager, key)
      with graph.as_default():
        parts = _members(self._channels, group.root, read, alive)
        masked = parts[0][1] is not None
        # A recurrent writer's unit weights: every entry kept.
        parts.extend(
            (w, tf.ones([int(w.shape[0])], tf.float32) if masked else None)
            for w in self._unit_weights(group, read))
        if GROUPING == 'rms':
          parts = [(tf.concat([w for w, _ in parts], axis=0),
                    tf.concat([k for _, k in parts], axis=0)
                    if masked else None)]
        members = [
            group_lasso_regularizer.GroupLassoRegularizer(
                weight_tensor=weights, reduce_dims=[0],
                threshold=self._settings.threshold,
                l1_fraction=self._settings.l1_fraction)
            if kept is None else
            _KeptGroupLasso(weights, kept, self._settings.threshold,
                            self._settings.l1_fraction)
            for weights, kept in parts]
        self._regularizers[group.root] = (
            members[0] if len(members) == 1 else
            grouping_regularizers.L2GroupingRegularizer(
                members, threshold=self._settings.threshold))
        scale = hidden_members.check_gradient_scale(
            GRADIENT_SCALE, group.layers or group.members)
        if scale != 1.0:
          self._regularizers[group.root] = _ScaledGradient(
              self._regularizers[group.root], scale)
    return self._regularizers[group.root]

  def _alive(self, manager, key) -> Optional[tf.Tensor]:
    """The alive vector (bool) of the heads or channels a `kept` key of
    `hidden_members.kept_member_weights` names, as `alive_counts()` reads
    them and rebuild keeps them, or None (every entry kept: not
    regularized, or a hidden group, whose own alive vector would make the
    values circular).

    ('heads', name): the heads of a pruned attention layer. ('out', name):
    a reader's output channels, the regularizer of its kernel ops. ('in',
    name): a writer's input channels, those of the width-taking layers
    of its input group. A group that would disconnect an output keeps
    `min_channels` alive (`regularizable.keep_connected` wraps its
    regularizer after this): so does its vector here.
    """
    kind, name = key
    channels, table = self._channels, self._channels.table
    if kind == 'heads':
      heads = self._attention.head_regularizers().get(name)
      return None if heads is None else heads.alive_vector
    root = hidden_members.kept_group(channels, key)
    if root is None or root in self._pruned_roots():
      return None
    if kind == 'out':
      names = {name}
    else:
      names = {n for n in channels.source_layers()
               if _is_group(channels.layer_out.get(n), root, table) and
               not isinstance(channels.rule(n), builtin_rules.AttentionRule)}
    vectors = []
    for op in manager.ops:
      if op.type not in _KERNEL_OP_TYPES or (
          self._traced.known_layer_name(op, channels.layers) not in names):
        continue
      regularizer = manager.get_regularizer(op)
      if regularizer is None:
        continue
      if names & self._settings.connecting and not isinstance(
          regularizer, minimum_alive_regularizer.MinimumAliveRegularizer):
        regularizer = minimum_alive_regularizer.MinimumAliveRegularizer(
            regularizer, self._settings.minimum)
      vectors.append(tf.cast(regularizer.alive_vector, tf.bool))
    if not vectors or len({int(v.shape[-1]) for v in vectors}) != 1:
      return None
    result = vectors[0]
    for vector in vectors[1:]:
      result = tf.logical_or(result, vector)
    return result

  def _pruned_roots(self):
    return {g.root for g in self.pruned_groups()}

  def _unit_calls(self, group) -> list:
    """The calls of the recurrent layers writing `group` whose units are
    pruned and are its channels (one copy of the units per output)."""
    if self._recurrent is None:
      return []
    names = set(group.layers)
    return [call for call in self._recurrent.unit_calls()
            if call.layer.name in names and call.output_copies() == 1 and
            builtin_rules.recurrent_units(call.layer) == group.size]

  def _unit_weights(self, group, read) -> List[tf.Tensor]:
    """[weights per unit, units] of each recurrent layer writing `group`
    (see `_unit_calls`), each layer once: members of its value, as a
    Dense writer's columns are."""
    parts, seen = [], set()
    for call in self._unit_calls(group):
      if call.layer.name in seen:
        continue
      seen.add(call.layer.name)
      parts.append(recurrent.unit_weights(call.layer, read))
    return parts

  def _source(self, group):
    """callable(op_slice) -> OpRegularizer of a source op of `group`."""
    def create(op_slice):
      self._regularizer(group)
      start, size = op_slice.slice.start_index, op_slice.slice.size
      if start == 0 and size == group.size:
        return self._regularizers[group.root]
      # The group's regularizer when read: `override` makes it again over
      # the entries rebuild keeps.
      return concat_and_slice_regularizers.SlicingReferenceRegularizer(
          lambda: self._regularizers[group.root], start, size)
    return create

  def source_ops(self) -> List[tf.Operation]:
    return [op for g in self.pruned_groups() for op in g.source_ops]

  def embedding_ops(self) -> Dict[str, List[tf.Operation]]:
    """{Embedding layer name: its source ops} of the pruned groups (the
    ops `alive_counts()` reads the Embedding's channels from)."""
    result = {}
    embedding_layers = {n for g in self.pruned_groups()
                        for n in g.embeddings}
    for group in self.pruned_groups():
      for op in group.source_ops:
        name = recurrent._scope_of(op.name, embedding_layers)  # pylint: disable=protected-access
        if name is not None:
          result.setdefault(name[1], []).append(op)
    return result

  @contextlib.contextmanager
  def sources(self):
    """A scope in which the op handler registries make the pruned groups'
    source ops sources (`recurrent.UnitSourceHandler` over the handlers
    of their op types, those of an enclosing scope included).

    Yields:
      None.
    """
    groups = self.pruned_groups()
    sources = {op: self._source(g) for g in groups for op in g.source_ops}
    if not sources:
      yield
      return
    defaults = op_handlers.get_group_lasso_op_handler_dict(
        *self._settings[:2])
    handlers = {op_type: recurrent.UnitSourceHandler(defaults[op_type],
                                                     sources)
                for op_type in sorted({op.type for op in sources})}
    with op_handlers.custom_handler_scope(handlers):
      yield

  def override(self, manager) -> None:
    """Gives every op group holding a pruned group's channels the group's
    regularizer (the analysis combined its sources' own)."""
    for group in self.pruned_groups():
      regularizer = None
      for op in self._group_ops(manager, group):
        for op_slice in manager.get_op_slices(op):
          op_group = manager.get_op_group(op_slice)
          if op_group is None or op_slice.slice.size != group.size:
            continue
          if regularizer is None:
            with self._traced.graph.as_default():
              regularizer = self._regularizer(group, manager)
              if self._connects(group):
                regularizer = (
                    minimum_alive_regularizer.MinimumAliveRegularizer(
                        regularizer, self._settings.minimum))
          manager.set_group_regularizer(op_group, regularizer)

  def _connects(self, group) -> bool:
    return bool(set(group.layers) & self._settings.connecting)

  def connecting_layers(self) -> List[str]:
    """The width-taking layers of pruned groups that keep `min_channels`
    alive (their removal would disconnect a model output)."""
    return sorted({n for g in self.pruned_groups() if self._connects(g)
                   for n in g.layers})

  def _group_ops(self, manager, group) -> List[tf.Operation]:
    """The source ops of `group` and the weight ops of its width-taking
    layers in the analysis."""
    ops = list(group.source_ops)
    # A recurrent writer's output ops are not mapped to its layer by name.
    for call in self._unit_calls(group):
      ops.extend(call.unit_ops)
    names = set(group.layers)
    for op in manager.ops:
      if self._traced.known_layer_name(op, self._channels.layers) in names:
        ops.append(op)
    return ops
