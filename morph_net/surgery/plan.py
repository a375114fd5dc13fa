"""The rebuild plan: what a structure does to every layer of a model.

A `RebuildPlan` resolves a structure ({layer name: width}) against a
`ChannelModel`: the width of every width-taking layer and of every channel
group, the layers that vanish (width 0, or all inputs vanished), and the
channel spaces of every layer's inputs and output once vanished channels are
taken out. `rebuild` clones the model from it, `weight_transfer` slices
weights with it, and the Keras bridge's `StructureCost` reads the rebuilt
widths from it without building a model.
"""

import difflib
import math
import numbers
from typing import Dict, List, Optional

from absl import logging
import numpy as np

from morph_net import errors
from morph_net.surgery import channel_model as channel_model_lib
from morph_net.surgery import configurable_layers
from morph_net.surgery import layer_rule
from morph_net.surgery import spaces

__all__ = ['RebuildPlan', 'connecting_groups', 'connecting_sets',
           'rebuildable_structure']


class RebuildPlan(object):
  """Widths, vanished layers and effective channel spaces for a structure.

  Attributes:
    channels: the `ChannelModel`.
    widths: {width-taking layer name: width}.
    group_width: {group root: width} of the groups the structure sets.
    vanished: names of the layers whose (first) output vanished.
    eff_in: {layer name: input spaces after vanishing}.
    eff_out: {layer name: output space after vanishing}.
    live_inputs: {layer name: indices of its inputs that did not vanish}.
    vanishing_problems: why the zero widths cannot all vanish (messages;
      empty for a structure rebuild accepts).

  Args:
    channels: the channel model of the model to rebuild.
    structure: {layer name: width} of width-taking layers.
    fallback_rule: for width-taking layers missing from `structure`:
      'pass_through' keeps the original width, 'strict' raises, 'zero'
      makes them vanish.
    check_vanishing: raise for the first of `vanishing_problems`; with
      False they are only recorded.

  Raises:
    InvalidArgumentError: for an unknown fallback_rule.
    StructureError: if the structure names unknown layers, gives a negative
      width, gives different widths to one group, or changes a group that
      cannot change; and (with check_vanishing) if it vanishes only some
      inputs of a layer that needs them all, or makes a model output
      vanish.
    MissingWidthError: for a missing layer with fallback_rule='strict'.
  """

  def __init__(self, channels: channel_model_lib.ChannelModel,
               structure: Dict[str, int], fallback_rule: str = 'pass_through',
               check_vanishing: bool = True):
    self.channels = channels
    self.widths = self._resolve_widths(structure, fallback_rule)
    self.group_width = {channels.group_of(name): width
                        for name, width in self.widths.items()}
    self.vanished = set()
    self.eff_in = {}
    self.eff_out = {}
    self.live_inputs = {}
    self.vanishing_problems = []
    self._propagate_vanishing()
    if check_vanishing and self.vanishing_problems:
      raise errors.StructureError(self.vanishing_problems[0])

  def _check_names(self, structure):
    ch = self.channels
    sources = ch.source_layers()
    unknown = sorted(set(structure) - set(sources))
    if not unknown:
      return
    name = unknown[0]
    if name in ch.layers and ch.rules.find(ch.layers[name]) is None:
      hint = ('it is a %s, which has no layer rule: rebuild keeps its '
              'channels and takes no width for it (register a LayerRule '
              'with a width_attribute for a layer whose width a structure '
              'sets)' % type(ch.layers[name]).__name__)
    elif name in ch.layers:
      hint = ('it is a %s, whose width follows its input; only %s layers '
              'take a width' % (type(ch.layers[name]).__name__,
                                '/'.join(ch.rules.width_layer_names())))
    else:
      close = difflib.get_close_matches(name, sources, n=1)
      hint = 'no such layer in model %r%s' % (
          ch.model.name, ('; did you mean %r?' % close[0]) if close else '')
    raise errors.StructureError(
        'Structure names layer %r, but %s%s Structure layers without a '
        'width of their own in the model: %s.' % (
            name, hint, '' if hint.endswith('?') else '.', unknown))

  def _resolve_widths(self, structure, fallback_rule):
    ch = self.channels
    if fallback_rule not in configurable_layers.FALLBACK_RULES:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `fallback_rule`. Expected one of %s. '
          'Received: fallback_rule=%r' %
          (configurable_layers.FALLBACK_RULES, fallback_rule))
    self._check_names(structure)
    widths = {}
    for name in ch.source_layers():
      if name in structure:
        width = _integer_width(name, structure[name])
      elif fallback_rule == 'strict':
        raise errors.MissingWidthError(
            'Layer %r (%s) is missing from the structure and '
            "fallback_rule='strict'. Add it or use fallback_rule="
            "'pass_through'." % (name, type(ch.layers[name]).__name__))
      elif fallback_rule == 'zero':
        width = 0
      else:
        width = ch.original_width(name)
      if width < 0:
        raise errors.StructureError(
            'Width of layer %r must be >= 0. Received: %d' % (name, width))
      widths[name] = width
    output_groups = ch.output_groups()
    for group in ch.groups():
      self._check_group(group, widths, output_groups)
    return widths

  def _check_group(self, group, widths, output_groups):
    ch = self.channels
    group_widths = {n: widths[n] for n in group}
    if len(set(group_widths.values())) > 1:
      raise errors.StructureError(
          'Layers %s form one channel group (their outputs are added, '
          'multiplied or normalised together) and must have equal widths. '
          'Received: %s. Give every layer of the group the same width.' %
          (group, ', '.join('%s=%d' % kv for kv in group_widths.items())))
    width = group_widths[group[0]]
    reason = ch.frozen_reason(group[0])
    if reason and width != ch.original_width(group[0]):
      raise errors.StructureError(
          'The width of layers %s cannot change (%d -> %d): %s. Keep their '
          'original width in the structure.' %
          (group, ch.original_width(group[0]), width, reason))
    # Width 0 is left to the vanishing check, which names the output.
    if (width and width != ch.original_width(group[0]) and
        ch.group_of(group[0]) in output_groups):
      raise errors.StructureError(
          'The width of layers %s cannot change (%d -> %d): their channels '
          'reach a model output, and a model output keeps its width. Keep '
          'their original width in the structure.' %
          (group, ch.original_width(group[0]), width))

  def _propagate_vanishing(self):
    ch = self.channels
    dead_tensors = set()
    eff = {id(t): ch.space[id(t)] for t in ch.functional.inputs}
    for layer, inputs, outputs in ch.nodes:
      rule = ch.rule(layer)
      dead = [id(t) in dead_tensors for t in inputs]
      in_eff = [eff.get(id(t), ch.space[id(t)]) for t in inputs]
      live = [i for i, d in enumerate(dead) if not d]
      out_dead = self.widths.get(layer.name) == 0 or not live
      if not out_dead and len(live) < len(inputs) and (
          not rule.accepts_vanished(layer)):
        self.vanishing_problems.append(
            'Layer %s has inputs that vanished (all their channels have '
            'width 0: %s) and others that did not; only the Add layer and '
            'concatenations along the channel axis can drop vanished inputs. '
            'Keep a nonzero width for the layers feeding it.' %
            (layer_rule.describe_layer(layer),
                             [inputs[i].name for i, d in enumerate(dead)
                              if d]))
      if out_dead:
        out_eff = spaces.Dead(layer_rule.num_channels(outputs[0]))
      else:
        out_eff = rule.live_output_space(
            layer, ch.space[id(outputs[0])],
            [ch.space[id(t)] for t in inputs], in_eff, dead,
            [layer_rule.num_channels(t) for t in inputs])
      for tensor in outputs:
        eff[id(tensor)] = out_eff
        if out_dead:
          dead_tensors.add(id(tensor))
      if layer.name not in self.eff_in:
        self.eff_in[layer.name] = in_eff
        self.eff_out[layer.name] = out_eff
        self.live_inputs[layer.name] = live
        if out_dead:
          self.vanished.add(layer.name)
    for tensor in ch.functional.outputs:
      zero = sorted(n for n, w in self.widths.items() if w == 0)
      if id(tensor) in dead_tensors:
        self.vanishing_problems.append(
            'Model output of layer %s vanished: every path to it goes '
            'through a layer of width 0 (width-0 layers: %s). Give one of '
            'them a width of at least 1 (a layer the regularizer killed '
            'whole: lower the strength, or set its width by hand).' %
            (_output_layer(tensor), zero))
      elif self.width(eff[id(tensor)]) != ch.space_size(ch.space[id(tensor)]):
        self.vanishing_problems.append(
            'Model output of layer %s would have %d channels instead of %d: '
            'part of it vanished (width-0 layers: %s), and a model output '
            'keeps its width. Keep a nonzero width for those layers.' %
            (_output_layer(tensor), self.width(eff[id(tensor)]),
             ch.space_size(ch.space[id(tensor)]), zero))

  def layer_config(self, layer, config: dict) -> dict:
    """The config a rebuilt layer (or operation) is made from.

    Args:
      layer: a layer of the original model.
      config: its `get_config()`, with its new width already set.

    Returns:
      The layer rule's `clone_config`, then (for a layer that does not
      vanish) its `sized_config` with the rebuilt output width.
    """
    rule = self.channels.rule(layer)
    config = rule.clone_config(layer, config)
    if layer.name in self.eff_out and layer.name not in self.vanished:
      config = rule.sized_config(layer, config,
                                 self.output_width(layer.name))
    return config

  def _kept_of_group(self, kept):
    def of_group(root):
      if kept is not None and root in kept:
        return kept[root]
      return np.arange(self.group_width.get(
          root, self.channels.group_size(root)))
    return of_group

  def indices(self, space: spaces.ChannelSpace,
              kept: Optional[Dict[int, np.ndarray]] = None) -> np.ndarray:
    """Original channel indices of `space` that survive.

    Args:
      space: a channel space of the original model.
      kept: optional {group root: sorted surviving indices}; groups not in
        it keep their first `width` channels.

    Returns:
      A 1-D int array.
    """
    return space.indices(self.channels.table, self._kept_of_group(kept))

  def width(self, space: spaces.ChannelSpace) -> int:
    """Number of channels of `space` in the rebuilt model."""
    return len(self.indices(space))

  def output_width(self, name: str) -> int:
    """Output channels of layer `name` in the rebuilt model."""
    return self.width(self.eff_out[name])

  def input_width(self, name: str) -> Optional[int]:
    """Channels of the first input of layer `name` in the rebuilt model
    (None for a layer without inputs)."""
    spaces_in = self.eff_in[name]
    return self.width(spaces_in[0]) if spaces_in else None


def _integer_width(name: str, value) -> int:
  """A structure's width as an int (2.0 is 2; 2.5 is an error)."""
  if (isinstance(value, (bool, np.bool_)) or
      not isinstance(value, numbers.Real) or not math.isfinite(value) or
      value != int(value)):
    raise errors.StructureError(
        'Width of layer %r must be a whole number of channels. Received: %r '
        '(%s). Round it, e.g. with expand_structure --round_to.' %
        (name, value, type(value).__name__))
  return int(value)


def _output_layer(tensor) -> str:
  """`'name' (Class)` of the layer a model output tensor comes from."""
  history = getattr(tensor, '_keras_history', None)
  layer = getattr(history, 'operation', None)
  return layer_rule.describe_layer(layer) if layer is not None else repr(
      tensor.name)


def rebuildable_structure(channels: channel_model_lib.ChannelModel,
                          structure: Dict[str, int]) -> Dict[str, int]:
  """`structure` with one channel kept in zero-width groups that cannot vanish.

  A learned structure may kill every channel of a group whose layers cannot
  be removed: the model output would vanish (in a Sequential model, any
  vanishing does), a Multiply would lose one of its inputs. Those groups get
  width 1; every other zero-width group still vanishes. Groups are decided
  in run order, each vanishing if it can given the decisions before it.

  Args:
    channels: the channel model.
    structure: {width-taking layer name: width}.

  Returns:
    A structure `rebuild` accepts (if `structure` is otherwise valid).

  Raises:
    StructureError: as `RebuildPlan`, for problems other than vanishing.
  """
  zero_groups = [[n for n in group if structure.get(n) == 0]
                 for group in channels.groups()]
  zero_groups = [group for group in zero_groups if group]
  result = dict(structure)
  for group in zero_groups:
    for name in group:
      result[name] = 1
  for group in zero_groups:
    trial = dict(result)
    for name in group:
      trial[name] = 0
    problems = RebuildPlan(channels, trial,
                           check_vanishing=False).vanishing_problems
    if problems:
      logging.info('Keeping one channel of %s: %s', group, problems[0])
    else:
      result = trial
  return result


def connecting_groups(channels: channel_model_lib.ChannelModel
                      ) -> List[List[str]]:
  """The channel groups whose removal would disconnect a model output.

  A group of width 0 vanishes with every layer that depends only on it; a
  residual branch or an Inception tower can vanish (its skip connection or
  its sibling towers carry on), but a group on the only path to an output
  cannot. These are the groups MorphNet must keep at least one channel of.

  Args:
    channels: the channel model of a model.

  Returns:
    [width-taking layer names of the group] for each such group whose width
    can change (frozen groups and groups reaching an output keep their
    width anyway), in the order of `channels.groups()`.
  """
  found = []
  outputs = channels.output_groups()
  for group in channels.groups():
    if (channels.frozen_reasons(group[0]) or
        channels.group_of(group[0]) in outputs):
      continue
    plan = RebuildPlan(channels, {name: 0 for name in group},
                       check_vanishing=False)
    if plan.vanishing_problems:
      found.append(list(group))
  return found


# Most killing sets kept per tensor by `connecting_sets` (see there).
MAX_KILLING_SETS = 4096


def _minimal(sets) -> List[frozenset]:
  """The distinct sets of `sets` that hold no other set of `sets`."""
  result, holding = [], {}  # holding: element -> kept sets with it.
  for candidate in sorted(set(sets), key=lambda s: (len(s), sorted(s))):
    if any(kept <= candidate for element in candidate
           for kept in holding.get(element, ())):
      continue
    result.append(candidate)
    for element in candidate:
      holding.setdefault(element, []).append(candidate)
  return result


def _all_of(families, truncated) -> List[frozenset]:
  """The minimal sets killing every one of several tensors, each killed by
  any set of its family (the unions of one set per family).

  A set in every family is one of them, and any union holding it is not
  minimal: only the other sets are combined (the families of an
  Inception block's towers all hold the sets killing the block's input).
  """
  if not families or any(not f for f in families):
    return []
  common = set(families[0]).intersection(*families[1:])
  result = [frozenset()]
  for family in families:
    rest = [f for f in family if f not in common]
    if not rest:
      result = []
      break
    result = _minimal(a | b for a in result for b in rest)
    if len(result) > MAX_KILLING_SETS:
      truncated.append(len(result))
      result = result[:MAX_KILLING_SETS]
  return _minimal(list(common) + result)


def connecting_sets(channels: channel_model_lib.ChannelModel
                    ) -> List[List[List[str]]]:
  """Sets of channel groups whose removal together disconnects the model.

  `connecting_groups` finds the groups whose removal alone makes a model
  output vanish (or a layer lose only some of the inputs it needs). Two
  parallel branches joined by a concatenation on the only path to an
  output can each vanish, but not both: this finds such sets, of any
  size, with no member a connecting group (those keep their channels
  anyway) and no smaller such set inside.

  A tensor vanishes when a layer of width 0 makes it, or all the inputs
  of the layer making it vanished (`RebuildPlan`). The sets of groups
  killing each tensor are built in run order (a width-taking layer's own
  group, or one killing set of each input together), keeping the minimal
  ones; those of the model outputs and of the inputs of layers with
  several inputs are the candidates: a set killing a model output is kept,
  one killing an input of a layer that may refuse vanished inputs (a
  Multiply; a concatenation reaching a model output) is checked with a
  `RebuildPlan` that removes exactly its groups. Only groups whose width
  can change and that are not connecting groups are considered. Past
  `MAX_KILLING_SETS` sets for one tensor the rest are dropped with a
  warning (the sets found are still right, some may be missing).

  Args:
    channels: the channel model of a model.

  Returns:
    [[width-taking layer names of one group] for each group of the set]
    for each set, smaller sets first, groups in the order of
    `channels.groups()`.
  """
  outputs = channels.output_groups()
  single = {channels.group_of(group[0])
            for group in connecting_groups(channels)}
  free, order = {}, {}
  for group in channels.groups():
    root = channels.group_of(group[0])
    order[root] = len(order)
    if (channels.frozen_reasons(group[0]) or root in outputs or
        root in single):
      continue
    free[root] = group
  if len(free) < 2:
    return []
  root_of = {name: root for root, group in free.items() for name in group}
  killing, candidates, truncated = {}, set(), []
  for layer, inputs, outputs_of_node in channels.nodes:
    families = [killing.get(id(t), []) for t in inputs]
    if len(inputs) > 1 and (
        not channels.rule(layer).accepts_vanished(layer) or
        set(channels.space[id(outputs_of_node[0])].group_ids(
            channels.table)) & outputs):
      # Some inputs vanishing may be refused here (a Multiply; a
      # concatenation whose channels reach a model output).
      candidates.update(s for f in families for s in f if len(s) > 1)
    family = _all_of(families, truncated) if inputs else []
    if layer.name in root_of:
      family = _minimal(family + [frozenset([root_of[layer.name]])])
    for tensor in outputs_of_node:
      killing[id(tensor)] = family
  # Sets killing a model output disconnect it: no plan needed.
  found = _minimal(s for t in channels.functional.outputs
                   for s in killing.get(id(t), []) if len(s) > 1)
  if truncated:
    logging.warning(
        'connecting_sets: model %r has %d sets of layers killing one '
        'tensor; only the first %d smallest are checked, so some sets of '
        'layers that disconnect the model together may die together.',
        channels.model.name, max(truncated), MAX_KILLING_SETS)
  for candidate in sorted(candidates, key=lambda s: (
      len(s), sorted(order[r] for r in s))):
    if any(f <= candidate for f in found):
      continue
    structure = {name: 0 for root in candidate for name in free[root]}
    if RebuildPlan(channels, structure,
                   check_vanishing=False).vanishing_problems:
      found.append(candidate)
  found = sorted(_minimal(found), key=lambda s: (
      len(s), sorted(order[r] for r in s)))
  return [[free[root] for root in sorted(s, key=order.get)] for s in found]
