"""Which channels of a Keras model the regularizer may push towards zero.

The regularizer's cost must be the cost of the model the user gets from
`rebuild(model, alive_counts())`. Two kinds of channel groups cannot be
narrowed by rebuild, so regularizing them would make the trained cost a cost
no rebuilt model has:

- groups that reach a model output (a classifier keeps its classes; the
  original's users excluded them by hand with `regularizer_blacklist`);
- groups that surgery's channel model freezes (a Dense feeding a `Reshape`,
  the inputs of a layer surgery does not understand, ...);
- channels inside a layer that takes no width (a custom layer's inner
  Dense, e.g. a Squeeze-Excitation bottleneck): the channel model knows the
  layer's input and output channels only, so an op reading the layer's
  weights whose output channels are not the layer's (`inner_fixed_sides`)
  keeps its width.

`excluded_ops(traced)` finds the ops of those groups in the trace;
`build_regularizer` passes them to the network regularizer as
`regularizer_blacklist`, so the graph analysis and rebuild agree by
construction. Width-taking layers frozen for a reason other than reaching an
output are named in one warning. `each_kernel_once` keeps a model size from
counting a shared layer's kernel once per call.
"""

import functools
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.framework import minimum_alive_regularizer
from morph_net.framework import op_vocabulary
from morph_net.network_regularizers import op_types
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import layer_rule

__all__ = ['ExcludedOps', 'excluded_ops', 'fixed_width_layers',
           'keep_connected',
           'blacklist_regex', 'build_regularizer', 'each_kernel_once',
           'uncosted_layers', 'warn_uncosted', 'inner_fixed_sides',
           'OUTPUT_REASON']

# Op types that hold conv or matrix-product arithmetic the cost functions
# do not read (unless they are added to op_types.COSTED_OP_TYPES):
# function calls (grouped and some depthwise convs), loops, einsums.
_HIDDEN_ARITHMETIC_OP_TYPES = (op_vocabulary.CALL_OP_TYPES |
                               op_vocabulary.LOOP_OP_TYPES |
                               op_vocabulary.EINSUM_OP_TYPES)

OUTPUT_REASON = 'its channels reach a model output'


def fixed_width_layers(channels: channel_model.ChannelModel
                       ) -> Dict[str, str]:
  """{layer name: why rebuild cannot narrow its output channels}.

  Every layer of the channel model whose output has a channel group that is frozen or
  reaches a model output is listed (weightless layers too).

  Args:
    channels: the channel model of the traced model.

  Returns:
    The layers and a reason (frozen reasons before outputs; of several,
    the one nearest to the layer, see `ChannelModel.frozen_reason`).
  """
  table = channels.table
  output_groups = channels.output_groups()
  fixed = {}
  for name, space in channels.layer_out.items():
    for gid in space.group_ids(table):
      reason = channels.frozen_reason(name, gid)
      if reason:
        fixed[name] = reason
        break
      if table.find(gid) in output_groups:
        fixed[name] = OUTPUT_REASON
        break
  return fixed


# Ops whose first input and output hold the channels they read and write.
_CHANNEL_OP_TYPES = (op_types.CONV_OP_TYPES |
                     op_types.DEPTHWISE_OP_TYPES |
                     op_types.MATMUL_OP_TYPES |
                     op_types.EINSUM_OP_TYPES)


def inner_fixed_sides(channels: channel_model.ChannelModel, name: str,
                      op: tf.Operation, traced=None):
  """The channel counts of `op` that stay fixed inside layer `name`.

  A layer whose rule takes no width (a pass-through custom layer, an opaque
  one, a depthwise conv) narrows with its input and output channels only.
  An op reading its weights whose input or output channel count is not the
  one its rule gives the layer's ops (`LayerRule.op_widths` of the layer's
  channels) works on channels of the layer's own, which rebuild keeps: the
  bottleneck of a Squeeze-Excitation block written as a custom layer
  (input C -> r, then r -> C). With `traced`, a side whose count happens
  to equal the layer's (a bottleneck as wide as the channels, ratio 1) is
  told by the graph instead (`_inner_side`): a side that another op of the
  layer reading its weights produces (input) or reads (output), with no
  path to the rest of the model in between, is the layer's own.

  Args:
    channels: the channel model.
    name: the layer of the channel model `op` belongs to.
    op: a traced op.
    traced: the `tracing.TracedModel` of `op` (None: sides are told by
      their counts only).

  Returns:
    (input count or None, output count or None): the original count of
    each side that stays fixed, None for a side that follows the layer
    (always (None, None) for layers whose width a structure sets and for
    op types whose channels are not read from their first input and
    output). A layer whose rule takes a width but that has no channels of
    its own in the channel model (a MultiHeadAttention whose heads rebuild
    cannot remove) is treated as one that takes no width: the projections
    and attention products inside it keep their counts.
  """
  layer = channels.layers.get(name)
  if layer is None or op.type not in _CHANNEL_OP_TYPES:
    return None, None
  rule = channels.rule(layer)
  if rule.width_attribute and name in channels.source_layers():
    return None, None
  output = channels.space_size(channels.layer_out[name])
  inputs = channels.layer_in.get(name)
  first = channels.space_size(inputs[0]) if inputs else output
  want = rule.op_widths(layer, first, output,
                        op.type in op_types.DEPTHWISE_OP_TYPES)
  have = tuple(tf.compat.dimension_value(t.shape[-1])
               for t in (op.inputs[0], op.outputs[0]))
  fixed = [h if h is not None and h != w else None
           for h, w in zip(have, want)]
  if traced is not None:
    layer_names = channels.layers
    for side in (0, 1):
      if fixed[side] is None and have[side] is not None and _inner_side(
          traced, layer_names, name, op, backward=side == 0):
        fixed[side] = have[side]
  return tuple(fixed)


def _inner_side(traced, layer_names, name: str, op: tf.Operation,
                backward: bool) -> bool:
  """Whether `op`'s input (backward) or output channels are the channels
  of layer `name`'s own: every path from them through the graph (against
  the data flow for the input, along it for the output; variables and
  constants aside) meets another channel op (conv, matmul, einsum, call)
  reading the weights of layer `name` before it meets an op reading
  another layer's weights, a model input or a model output, and one does.
  """
  seen = set()
  stack = list(op.inputs[:1]) if backward else list(op.outputs[:1])
  own = False
  while stack:
    tensor = stack.pop()
    if tensor.ref() in seen or tensor.dtype == tf.resource:
      continue
    seen.add(tensor.ref())
    nexts = [tensor.op] if backward else list(tensor.consumers())
    if not nexts:
      return False  # A model output.
    for other in nexts:
      owner = traced.known_layer_name(other, layer_names)
      if owner is not None and owner != name:
        return False  # Another layer's channels.
      if owner == name and (other.type in _CHANNEL_OP_TYPES or
                            other.type in op_vocabulary.CALL_OP_TYPES):
        own = True
        continue
      if backward:
        if other.type == 'Placeholder':
          return False  # A model input.
        stack.extend(other.inputs)
      else:
        stack.extend(other.outputs)
  return own


class ExcludedOps(object):
  """Ops of the trace whose channel groups must not be regularized.

  Attributes:
    op_names: names of the excluded ops (sorted).
    layers: {layer name: reason} of the layers whose weight ops
      are excluded.
    warned: the names of `layers` a user would expect to be regularized:
      width-taking layers (conv, dense) whose groups are frozen for a reason
      other than reaching an output.
    channels: the channel model (None for models rebuild does not read,
      e.g. subclassed models).
  """

  def __init__(self, op_names: List[str], layers: Dict[str, str],
               warned: Optional[List[str]] = None,
               channels: Optional[channel_model.ChannelModel] = None):
    self.op_names = sorted(set(op_names))
    self.layers = dict(layers)
    self.warned = sorted(warned or [])
    self.channels = channels

  def blacklist(self) -> List[str]:
    """`regularizer_blacklist` entries excluding exactly these ops."""
    regex = blacklist_regex(self.op_names)
    return [regex] if regex else []

  def warn(self) -> None:
    """One warning naming the `warned` layers and why."""
    frozen = {n: self.layers[n] for n in self.warned}
    if not frozen:
      return
    hint = ''
    if any(layer_rule.UNKNOWN in reason for reason in frozen.values()):
      hint = ('; register a layer rule (morph_net.surgery.'
              'register_layer_rule) for a layer rebuild does not understand')
    logging.warning(
        'Rebuild cannot narrow the channels of %d layer(s): %s. MorphNet '
        'does not regularize them and keeps their widths%s.', len(frozen),
        '; '.join('%r: %s' % item for item in sorted(frozen.items())), hint)


def blacklist_regex(op_names: List[str]) -> Optional[str]:
  """One anchored regex matching exactly `op_names` (None if empty)."""
  if not op_names:
    return None
  return '^(?:%s)$' % '|'.join(re.escape(n) for n in sorted(set(op_names)))


def excluded_ops(traced, keep_output_widths: bool = True) -> ExcludedOps:
  """The ops whose groups the bridge does not regularize.

  The model outputs are always excluded. For functional and Sequential
  models, so are the weight-reading ops (convs, matmuls, batch-norm scales)
  of every layer whose output channels rebuild cannot narrow (see
  `fixed_width_layers`; the layers of nested functional and Sequential
  models are layers of surgery's flat view). Subclassed models (which
  rebuild does not support) only exclude their outputs.

  Args:
    traced: a `tracing.TracedModel`.
    keep_output_widths: exclude the groups reaching a model output; False
      leaves them regularized (the original's default).

  Returns:
    The `ExcludedOps`.
  """
  op_names = ([op.name for op in traced.output_ops] if keep_output_widths
              else [])
  try:
    channels = channel_model.analyze(traced.model)
  except (errors.UnsupportedModelError, errors.InvalidArgumentError) as e:
    logging.info('Only the outputs of model %r are kept from '
                 'regularization: %s', traced.model.name, e)
    return ExcludedOps(op_names, {})
  fixed = fixed_width_layers(channels)
  layers, warned = {}, set()
  for op in traced.forward_ops():
    name = traced.known_layer_name(op, channels.layers)
    if name is None:
      continue
    if name not in fixed and inner_fixed_sides(channels, name, op,
                                               traced)[1]:
      # Channels of the layer's own (a custom layer's inner Dense).
      op_names.append(op.name)
      continue
    if name not in fixed or (
        fixed[name] == OUTPUT_REASON and not keep_output_widths):
      continue
    op_names.append(op.name)
    layers[name] = fixed[name]
    if fixed[name] != OUTPUT_REASON and channels.rule(name).width_attribute:
      warned.add(name)
  for name, reason in fixed.items():
    # An Embedding reads its table with a gather (input 0), which
    # `known_layer_name` does not map: named from the channel model.
    # (`fixed` may name operation nodes the channel model lists elsewhere.)
    if name in channels.layers and isinstance(
        channels.rule(name), builtin_rules.EmbeddingRule) and (
            reason != OUTPUT_REASON or keep_output_widths):
      layers[name] = reason
      if reason != OUTPUT_REASON:
        warned.add(name)
  return ExcludedOps(op_names, layers, sorted(warned), channels)


def _op_groups_of(manager, traced, channels, names) -> Dict[str, List[Any]]:
  """{layer name: the regularized op groups of its ops' slices, in order}.

  A layer's output channels may be held by several op groups: the manager
  cuts the group feeding a depthwise conv with a depth multiplier above 1
  into one op group per channel (as the original's
  DepthwiseConvolutionOpHandler does).
  """
  found = {}
  for op in manager.ops:
    name = traced.known_layer_name(op, channels.layers)
    if name not in names:
      continue
    for op_slice in manager.get_op_slices(op):
      group = manager.get_op_group(op_slice)
      if group is None or manager.get_group_regularizer(group) is None:
        continue
      of_name = found.setdefault(name, [])
      if all(g is not group for g in of_name):
        of_name.append(group)
  return found


def _op_groups_of_group(op_groups, layer_names) -> List[Any]:
  """The op groups of a channel group's layers, each once, in order."""
  result = []
  for name in layer_names:
    for group in op_groups.get(name, []):
      if all(g is not group for g in result):
        result.append(group)
  return result


def keep_connected(manager, traced, channels, minimum: int) -> List[str]:
  """Keeps `minimum` channels alive in groups that would disconnect.

  The op groups of the width-taking layers of each group of surgery's
  `plan.connecting_groups` keep `minimum` channels alive together
  (`minimum_alive_regularizer.keep_group_alive`: counted on the group's
  channels, however many op groups the manager cut them into), so the
  cost, the alive vectors and the exported structure never remove them
  whole.

  Args:
    manager: the network regularizer's OpRegularizerManager.
    traced: the `tracing.TracedModel` it analysed.
    channels: surgery's channel model of the model (None: nothing to do).
    minimum: channels to keep (0: nothing to do).

  Returns:
    The names of the layers whose groups were wrapped (sorted).
  """
  if channels is None or minimum < 1:
    return []
  connecting = plan_lib.connecting_groups(channels)
  op_groups = _op_groups_of(manager, traced, channels,
                            {name for group in connecting for name in group})
  wrapped, names = set(), set()
  for layer_names in connecting:
    # An op group already kept with an earlier group is not kept twice.
    of_group = [g for g in _op_groups_of_group(op_groups, layer_names)
                if id(g) not in wrapped]
    if not of_group:
      continue
    regularizers = [manager.get_group_regularizer(g) for g in of_group]
    with traced.graph.as_default():
      kept = minimum_alive_regularizer.keep_group_alive(regularizers,
                                                        minimum)
    for group, regularizer in zip(of_group, regularizers):
      manager.set_group_regularizer(group, kept[id(regularizer)])
      wrapped.add(id(group))
    # Every member with a wrapped op group, not only the first.
    names.update(name for name in layer_names
                 if any(id(g) in wrapped for g in op_groups.get(name, [])))
  return sorted(names)


def keep_sets_connected(manager, traced, channels, minimum: int,
                        layer_regularizers: Optional[Dict[str, Any]] = None,
                        set_layer_regularizer: Optional[Callable[
                            [str, Any], None]] = None
                        ) -> List[List[List[str]]]:
  """Keeps channels alive in sets of groups that disconnect only together.

  For each set of surgery's `plan.connecting_sets` (two parallel branches
  joined by a concatenation on the only path to an output), the
  regularizers of its groups are wrapped (`minimum_alive_regularizer.
  keep_sets_alive`): when all of them are dead, the group with the largest
  regularization value keeps `minimum` channels (counted on the group's
  channels, however many op groups hold them), so the cost, the alive
  vectors and the exported structure never disconnect the network.

  Args:
    manager: the network regularizer's OpRegularizerManager.
    traced: the `tracing.TracedModel` it analysed.
    channels: surgery's channel model of the model (None: nothing to do).
    minimum: channels to keep (0: nothing to do).
    layer_regularizers: {layer name: OpRegularizer} of width-taking layers
      regularized outside the manager (attention heads).
    set_layer_regularizer: callable(layer name, OpRegularizer) replacing
      one of those.

  Returns:
    The sets kept: [[width-taking layer names of one group] per group].
    A set with a group that no regularizer reaches is left out (that
    group never dies).
  """
  if channels is None or minimum < 1:
    return []
  sets = plan_lib.connecting_sets(channels)
  if not sets:
    return []
  layer_regularizers = layer_regularizers or {}
  op_groups = _op_groups_of(
      manager, traced, channels,
      {n for one_set in sets for group in one_set for n in group})
  kept, members = [], []  # members: [(op group or layer name, regularizer)]
  for one_set in sets:
    of_set = []  # [[(owner, regularizer)] per group of the set]
    for group in one_set:
      # A layer regularized outside the manager: its own channels (heads)
      # only.
      of_group = [(name, layer_regularizers[name]) for name in group
                  if name in layer_regularizers]
      of_group.extend(
          (g, manager.get_group_regularizer(g)) for g in _op_groups_of_group(
              op_groups, [n for n in group if n not in layer_regularizers]))
      if not of_group:
        break
      of_set.append(of_group)
    else:
      kept.append(one_set)
      members.append(of_set)
  if not kept:
    return []
  with traced.graph.as_default():
    wrapped = minimum_alive_regularizer.keep_sets_alive(
        [[[r for _, r in of_group] for of_group in of_set]
         for of_set in members], minimum)
  for of_set in members:
    for of_group in of_set:
      for owner, regularizer in of_group:
        if isinstance(owner, str):
          set_layer_regularizer(owner, wrapped[id(regularizer)])
        else:
          manager.set_group_regularizer(owner, wrapped[id(regularizer)])
  return kept


def build_regularizer(traced, regularizer_class, excluded: ExcludedOps,
                      regularizer_kwargs: Dict[str, Any], **boundaries):
  """Builds a network regularizer on `traced` without the excluded groups.

  The manager refuses a blacklist regex that matches no group; when the
  excluded ops are in no group there is nothing to exclude, and the
  regularizer is built with the user's blacklist alone (so, for example,
  the no-source error stays the one raised).

  Args:
    traced: a `tracing.TracedModel`.
    regularizer_class: a network regularizer class.
    excluded: the `ExcludedOps`.
    regularizer_kwargs: its arguments other than the boundaries (a
      `regularizer_blacklist` is extended).
    **boundaries: extra_output_ops / extra_input_ops of
      `TracedModel.build_regularizer`.

  Returns:
    The network regularizer.
  """
  kwargs = dict(regularizer_kwargs)
  user_blacklist = list(kwargs.pop('regularizer_blacklist', None) or [])
  build = functools.partial(traced.build_regularizer, regularizer_class,
                            **boundaries, **kwargs)
  ours = excluded.blacklist()
  try:
    if ours:
      try:
        return build(regularizer_blacklist=user_blacklist + ours)
      except errors.InvalidArgumentError as e:
        # Our regex matched no group (the excluded ops are in none): build
        # without it. Any other error, the user's regexes included, stands.
        if getattr(e, 'unused_regex', None) != ours[0]:
          raise
    return build(regularizer_blacklist=user_blacklist)
  except errors.NoSourceOpsError as e:
    hint = _other_normalizations_hint(traced.model)
    if not hint:
      raise
    raise errors.NoSourceOpsError('%s %s' % (e, hint)) from e


# Normalizations with a learned scale that Gamma regularizers do not read.
_OTHER_NORMALIZATIONS = ('LayerNormalization', 'GroupNormalization',
                         'RMSNormalization')


def _other_normalizations_hint(model) -> Optional[str]:
  """Why the scales of a model's layer norms (group norms, RMS norms) are
  not Gamma sources, or None if it has none with a scale."""
  found = []
  for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
    # `scale` is a flag of LayerNormalization, the weight itself of
    # RMSNormalization (a Keras variable has no truth value).
    if (type(layer).__name__ in _OTHER_NORMALIZATIONS and
        getattr(layer, 'scale', True) is not False):
      found.append('%r (%s)' % (layer.name, type(layer).__name__))
  if not found:
    return None
  return ('The learned scales of %s do not count: a layer norm (or group or '
          'RMS norm) normalises over its channels, so a channel whose scale '
          "is zero still changes the other channels' statistics and cannot "
          'be removed exactly; Gamma regularizers read batch-norm scales '
          'only. Use a GroupLasso regularizer (e.g. '
          'GroupLassoFlopsRegularizer) for this model.' %
          ', '.join(found[:5] + (['...'] if len(found) > 5 else [])))


def each_kernel_once(traced, ops: Sequence[tf.Operation]
                     ) -> List[tf.Operation]:
  """`ops` without the later ops that read a kernel an earlier one reads.

  A shared layer runs once per call, but its weights exist once: a model
  size counts them once.
  """
  result, seen = [], set()
  for op in ops:
    kernel = (traced.kernel_placeholder(op)
              if op.type in op_types.WEIGHTED_OP_TYPES else None)
    if kernel is not None:
      if kernel.ref() in seen:
        continue
      seen.add(kernel.ref())
    result.append(op)
  return result


def uncosted_layers(traced, skip_ops=()) -> Dict[str, List[str]]:
  """{Keras layer name: op types} of ops whose arithmetic is not costed.

  Args:
    traced: a `tracing.TracedModel`.
    skip_ops: ops costed elsewhere (the recurrent layers' loops).

  Returns:
    For each layer (by its name scope; '?' if none) the sorted op types
    of `_HIDDEN_ARITHMETIC_OP_TYPES` that the cost functions do not read.
  """
  skip = set(skip_ops)
  hidden = _HIDDEN_ARITHMETIC_OP_TYPES - op_types.COSTED_OP_TYPES
  names = {l.name for l in traced.model._flatten_layers(  # pylint: disable=protected-access
      include_self=False, recursive=True)}
  found = {}
  for op in traced.forward_ops():
    if op.type not in hidden or op in skip:
      continue
    layer = traced.scope_layer_name(op, names) or '?'
    found.setdefault(layer, set()).add(op.type)
  return {layer: sorted(types) for layer, types in found.items()}


def warn_uncosted(traced, skip_ops=()) -> None:
  """One warning naming the layers whose arithmetic is not counted."""
  found = uncosted_layers(traced, skip_ops)
  if found:
    logging.warning(
        'The cost does not count the arithmetic of %d layer(s), which the '
        'graph analysis cannot read: %s. Their FLOPs and weights are '
        'missing from the cost.', len(found),
        '; '.join('%r (%s)' % (layer, ', '.join(types))
                  for layer, types in sorted(found.items())))
