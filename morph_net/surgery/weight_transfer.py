"""Weight transfer from a model into its rebuilt, narrower copy.

Two steps, both driven by a `RebuildPlan` and the layer rules:
`choose_kept_channels` picks the surviving channels of every group (given
alive masks, or the largest batch-norm |gamma|, or the largest kernel
norms), and `transfer_weights` copies every layer's weights restricted to
them (`LayerRule.transfer_weights`). `rebuild.rebuild(...,
transfer_weights=True)` calls both.
"""

import collections
from typing import Dict, Optional

from absl import logging
import keras
import numpy as np

from morph_net import errors
from morph_net.surgery import layer_rule
from morph_net.surgery import nesting
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import spaces

__all__ = ['choose_kept_channels', 'transfer_weights']


def _masks_by_group(model, plan, alive_masks):
  """{group root: (layer name, bool mask)} from user-given alive masks."""
  ch = plan.channels
  unknown = sorted(set(alive_masks) - set(ch.source_layers()))
  if unknown:
    raise errors.InvalidArgumentError(
        'alive_masks names layers %s that are not width-taking layers of '
        'model %r.' % (unknown, model.name))
  masks = {}
  for name in ch.source_layers():
    if name not in alive_masks:
      continue
    gid = ch.group_of(name)
    mask = np.asarray(alive_masks[name], bool).reshape([-1])
    if gid in masks and not np.array_equal(masks[gid][1], mask):
      raise errors.InvalidArgumentError(
          'alive_masks of %r and %r differ, but the layers are in one '
          'channel group.' % (masks[gid][0], name))
    masks[gid] = (name, mask)
  return masks


def _channel_scores(plan):
  """{group root: score per channel}: normalizer |gamma| first, else kernels."""
  ch = plan.channels
  scores = collections.defaultdict(lambda: 0.0)
  normalized = set()
  for name, layer in ch.layers.items():
    normalizer = ch.rule(layer).normalizer_scores(layer)
    space = (ch.layer_in.get(name) or [None])[0]
    if normalizer is not None and isinstance(space, spaces.Group):
      gid = ch.find(space.gid)
      scores[gid] = scores[gid] + normalizer
      normalized.add(gid)
  for name in ch.source_layers():
    gid = ch.group_of(name)
    if gid in normalized:
      continue
    layer = ch.layers[name]
    own = ch.rule(layer).channel_scores(layer)
    if own is not None:
      scores[gid] = scores[gid] + own
  return scores


def grown_groups(plan: plan_lib.RebuildPlan,
                 kept: Optional[Dict[int, np.ndarray]] = None
                 ) -> Dict[int, int]:
  """{group root: new width} of the groups that get channels with no
  surviving channel to copy from.

  Args:
    plan: the rebuild plan.
    kept: the surviving channels (`choose_kept_channels`); without it, the
      groups the structure makes wider than the model's.

  Returns:
    {group root: width} of the groups whose width exceeds their model width
    or, with `kept`, their count of surviving channels (an expanded
    structure given with alive masks: the dead channels are not copied).
  """
  ch = plan.channels
  return {gid: width for gid, width in plan.group_width.items()
          if width > (ch.group_size(gid) if kept is None or gid not in kept
                      else len(kept[gid]))}


def choose_kept_channels(model, plan: plan_lib.RebuildPlan,
                         alive_masks: Optional[Dict[str, np.ndarray]] = None,
                         allow_growth: bool = False
                         ) -> Dict[int, np.ndarray]:
  """The surviving channels of every group the plan sets a width for.

  Args:
    model: the original model.
    plan: its rebuild plan.
    alive_masks: optional {width-taking layer name: bool vector} choosing
      the survivors of its group; other groups keep the channels with the
      largest batch-norm |gamma| (or kernel norm when no batch norm follows).
    allow_growth: a group that grows keeps all its channels, or with a
      mask only its alive ones (see `transfer_weights`' `grown`), instead
      of raising; so does a group whose mask has fewer alive channels than
      its width.

  Returns:
    {group root: sorted surviving channel indices}.

  Raises:
    InvalidArgumentError: for masks of unknown layers or masks that differ
      within one group.
    WeightTransferError: for a group that grows, or a mask whose count of
      alive channels is not the structure's width (without `allow_growth`;
      with it, more alive channels than the width).
  """
  ch = plan.channels
  masks = _masks_by_group(model, plan, dict(alive_masks or {}))
  scores = _channel_scores(plan)
  kept = {}
  for gid, width in plan.group_width.items():
    size = ch.group_size(gid)
    if allow_growth and gid in masks:
      name, mask = masks[gid]
      if mask.size == size and int(mask.sum()) < width:
        kept[gid] = np.flatnonzero(mask)  # The rest starts fresh.
        continue
    if width > size:
      if allow_growth:
        kept[gid] = np.arange(size)
        continue
      raise errors.WeightTransferError(
          'Cannot transfer weights: group of layers %s grows from %d to %d '
          "channels. Pass on_growth='initialize' (fresh weights where a "
          'group grows) or transfer_weights=False for wider structures.' %
          ([n for n in ch.source_layers() if ch.group_of(n) == gid], size,
           width))
    if gid in masks:
      name, mask = masks[gid]
      if mask.size != size or int(mask.sum()) != width:
        if width == 0:
          kept[gid] = np.zeros([0], np.int64)
          continue
        raise errors.WeightTransferError(
            'alive_masks[%r] has %d of %d channels alive, but the structure '
            'gives width %d.%s' % (
                name, int(mask.sum()), mask.size, width,
                (" Pass on_growth='initialize' to copy the alive channels "
                 'and initialize the others (an expanded structure).'
                 if mask.size == size and int(mask.sum()) < width else '')))
      kept[gid] = np.flatnonzero(mask)
    else:
      order = np.argsort(-np.asarray(scores[gid]), kind='stable')
      kept[gid] = np.sort(order[:width])
  return kept


def _grows(plan, spaces_of_layer, grown) -> bool:
  table = plan.channels.table
  return any(gid in grown for space in spaces_of_layer
             for gid in space.group_ids(table))


def _paste_leading(fresh: np.ndarray, old: np.ndarray) -> np.ndarray:
  """`fresh` with `old` in its leading corner (old channels first)."""
  if any(o > f for o, f in zip(old.shape, fresh.shape)) or (
      old.ndim != fresh.ndim):
    return fresh
  value = np.array(fresh)
  value[tuple(slice(0, d) for d in old.shape)] = old
  return value


def _layer_indices(plan, name, kept) -> Optional[np.ndarray]:
  """The surviving channels of the own group of width-taking layer
  `name` (the heads of a MultiHeadAttention, which are not channels of
  its output), or None for a layer without one."""
  ch = plan.channels
  if name not in plan.widths:
    return None
  return plan.indices(spaces.Group(ch.group_of(name)), kept)


def transfer_weights(model, new_model, plan: plan_lib.RebuildPlan,
                     kept: Dict[int, np.ndarray],
                     grown: Optional[Dict[int, int]] = None) -> None:
  """Copies the surviving channels' weights of `model` into `new_model`.

  Args:
    model: the original model.
    new_model: the model rebuilt from `plan` (same layer names).
    plan: the rebuild plan.
    kept: {group root: surviving channel indices}, see
      `choose_kept_channels`.
    grown: {group root: width} of groups that grow (`grown_groups`). A
      layer whose input or output channels are in one keeps its fresh
      initialization, with the old weights copied into its first channels
      when its channels are laid out as whole groups (no concat, repeat or
      flatten in between); otherwise it stays fresh.

  Raises:
    WeightTransferError: when a layer rule cannot slice a weight, or the
      sliced weights do not have the rebuilt layer's shapes.
  """
  ch = plan.channels
  del model  # The layers are those of the channel model's (flat) view.
  grown = grown or {}
  old_layers = dict(ch.layers)
  for new_layer in nesting.leaf_layers(new_model):
    name = new_layer.name
    if not new_layer.weights or name not in plan.eff_out:
      continue
    old = old_layers[name]
    in_space = plan.eff_in[name][0] if plan.eff_in[name] else None
    layer_spaces = [s for s in (in_space, plan.eff_out[name]) if s is not None]
    growing = _grows(plan, layer_spaces, grown)
    if growing and not all(isinstance(s, spaces.Group)
                           for s in layer_spaces):
      logging.info('Layer %s keeps fresh weights: a group of it grows.',
                   layer_rule.describe_layer(old))
      continue
    selection = layer_rule.ChannelSelection(
        input_indices=(None if in_space is None else
                       plan.indices(in_space, kept)),
        output_indices=plan.indices(plan.eff_out[name], kept),
        output_channels=ch.space_size(ch.layer_out[name]),
        inputs_indices=[plan.indices(s, kept) for s in plan.eff_in[name]],
        layer_indices=_layer_indices(plan, name, kept))
    new_shapes = [tuple(w.shape) for w in new_layer.weights]
    old_values = [keras.ops.convert_to_numpy(w) for w in old.weights]
    if growing:
      old_shapes = [tuple(w.shape) for w in old_values]
      values = ch.rule(old).transfer_weights(old, old_values, old_shapes,
                                             selection)
      values = [_paste_leading(keras.ops.convert_to_numpy(fresh), value)
                for fresh, value in zip(new_layer.weights, values)]
    else:
      values = ch.rule(old).transfer_weights(old, old_values, new_shapes,
                                             selection)
    for value, shape in zip(values, new_shapes):
      if tuple(value.shape) != shape:
        raise errors.WeightTransferError(
            'Cannot transfer the weights of layer %s: computed shape %s, '
            'rebuilt layer has %s.' % (layer_rule.describe_layer(old),
                                        value.shape, shape))
    new_layer.set_weights(values)
  logging.info('Transferred weights into %r.', new_model.name)
