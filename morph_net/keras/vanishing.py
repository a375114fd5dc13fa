"""Layers that vanish in cascade, as the regularizer's cost sees them.

`rebuild` removes a layer whose width is 0 and, in cascade, every layer
all of whose inputs vanished (surgery's `RebuildPlan`): a Dense reading
only a dead batch norm goes, and with it its own batch norm, however
large that batch norm's scales are. The graph analysis knows channel
groups, not layers: it counts the alive channels of such a group at its
readers (a concatenation's reader sees them), so `cost()` would count
channels the rebuilt model does not have.

`Vanishing` walks the channel model's layer calls in run order, as the
plan does, with the widths the regularizer's alive vectors give (a
width-taking layer vanishes when none of its channels is alive): each
layer gets a boolean tensor "vanished", and each channel group a boolean
tensor "has a live writer" (one of its width-taking layers did not lose
every input). `mask_regularizer` makes a group's alive vector dead where
it has none; the cost, the term, the alive vectors and so the exported
structure then remove what rebuild removes. Everything is a function of
the alive vectors, so it runs in the traced graph like the cost.

Layers that cannot vanish (no width-taking layer that may die upstream)
get no tensor: the graph grows with the layers that can vanish only.
"""

from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from morph_net.framework import generic_regularizers
from morph_net.framework import minimum_alive_regularizer
from morph_net.surgery import channel_model as channel_model_lib

__all__ = ['Vanishing', 'mask_regularizer']


def _all(flags: Sequence[Optional[tf.Tensor]]) -> Optional[tf.Tensor]:
  """Logical and of flags (None: statically False, so the result too)."""
  if any(f is None for f in flags):
    return None
  return flags[0] if len(flags) == 1 else tf.reduce_all(tf.stack(flags))


def _any(flags: Sequence[Optional[tf.Tensor]]) -> Optional[tf.Tensor]:
  """Logical or of flags, None (False) when every flag is None."""
  known = [f for f in flags if f is not None]
  if not known:
    return None
  return known[0] if len(known) == 1 else tf.reduce_any(tf.stack(known))


class Vanishing(object):
  """Which layers vanish for the widths the alive vectors give.

  Mirrors `plan.RebuildPlan._propagate_vanishing`: an output vanishes when
  its layer's width is 0 or every input of the call vanished (a call
  without inputs vanishes); a layer is vanished as its first call is.

  Attributes:
    dead: {layer name: scalar bool tensor, whether it vanishes} for the
      layers that may vanish (a layer not listed never does).
    inputs_dead: {layer name: scalar bool tensor, whether every input of
      its first call vanished} for the layers where that may happen.

  Args:
    channels: the channel model of the model.
    alive: {width-taking layer name: bool vector of its alive channels}
      (the widths of the structure; a layer not listed keeps its width).
  """

  def __init__(self, channels: channel_model_lib.ChannelModel,
               alive: Dict[str, tf.Tensor]):
    self.channels = channels
    self.dead = {}
    self.inputs_dead = {}
    seen = set()
    dead_tensors = {}  # id(Keras tensor) -> bool tensor.
    for layer, inputs, outputs in channels.nodes:
      every_input = (tf.constant(True) if not inputs else
                     _all([dead_tensors.get(id(t)) for t in inputs]))
      zero = None
      if layer.name in alive:
        zero = tf.logical_not(tf.reduce_any(alive[layer.name]))
      out = _any([zero, every_input])
      if out is not None:
        for tensor in outputs:
          dead_tensors[id(tensor)] = out
      if layer.name in seen:
        continue
      seen.add(layer.name)
      if out is not None:
        self.dead[layer.name] = out
      if every_input is not None:
        self.inputs_dead[layer.name] = every_input

  def group_live(self, members: List[str]) -> Optional[tf.Tensor]:
    """Whether a channel group has a writer in the rebuilt model.

    Args:
      members: the group's width-taking layers (`ChannelModel.groups()`).

    Returns:
      A scalar bool tensor, False when every member lost all its inputs
      (its channels then vanish with them), or None when that cannot
      happen.
    """
    if any(name not in self.inputs_dead for name in members):
      return None
    return tf.logical_not(_all([self.inputs_dead[n] for n in members]))

  def group_masks(self) -> Dict[str, tf.Tensor]:
    """{width-taking layer name: its group's `group_live`} for the groups
    that may lose every writer."""
    masks = {}
    for members in self.channels.groups():
      live = self.group_live(members)
      if live is not None:
        masks.update((name, live) for name in members)
    return masks


def mask_regularizer(regularizer: generic_regularizers.OpRegularizer,
                     live: tf.Tensor) -> generic_regularizers.OpRegularizer:
  """`regularizer` whose channels are all dead where `live` is False.

  Args:
    regularizer: an OpRegularizer.
    live: a scalar bool tensor.

  Returns:
    An `AliveVectorRegularizer` with the same regularization vector.
  """
  return minimum_alive_regularizer.AliveVectorRegularizer(
      regularizer, tf.logical_and(regularizer.alive_vector, live))
