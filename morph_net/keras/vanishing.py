"""Layers that vanish in cascade, as the regularizers' costs see them.

`rebuild` removes a layer whose width is 0 and, in cascade, every layer
all of whose inputs vanished (surgery's `RebuildPlan`): a Dense reading
only a dead batch norm goes, and with it its own batch norm, however
large that batch norm's scales are. A regularizer knows channel groups:
it counted the alive channels of such a group at its readers (a
concatenation's reader sees them), and the ops of such a layer, so its
cost counted channels and arithmetic the rebuilt model does not have.

`Vanishing` walks the channel model's layer calls in run order, as the
plan does, with the widths the regularizer's alive vectors give (a
width-taking layer vanishes when none of its channels is alive). It gives

- `dead`: for each layer, whether its first call vanishes (its width is
  0 or it lost every input): rebuild removes it, its arithmetic counts 0
  (a separable conv of width 0 runs no depthwise step either);
- `inputs_dead`: for each layer, whether every input of its first call
  vanished;
- `group_masks()`: for each width-taking layer, whether its channel group
  keeps a writer: a width-taking layer of the group that did not lose
  every input. A group without one has no channels in the rebuilt model,
  so its alive vector counts as dead, at its readers too.

The flags are tensors of the alive vectors, built with a `Logic` (the
graph engine's TensorFlow ops, the layer-level engine's `keras.ops`), so
they run where the cost runs, inside compiled train steps too. A layer
that cannot vanish (no layer upstream of it may die whole) gets no flag:
the graph grows with the layers that can vanish only. This module imports
no TensorFlow.
"""

import collections
from typing import Dict, List, Optional, Sequence

from morph_net.surgery import channel_model as channel_model_lib

__all__ = ['Logic', 'Vanishing', 'may_vanish']

# Boolean scalar tensor operations: all_of(list), any_of(list), not_(x),
# true() (a True scalar).
Logic = collections.namedtuple('Logic', ['all_of', 'any_of', 'not_', 'true'])

# Flags that only say a layer may vanish (every flag is True).
_MAY = Logic(all_of=lambda flags: True, any_of=lambda flags: True,
             not_=lambda flag: True, true=lambda: True)


def may_vanish(channels: channel_model_lib.ChannelModel,
               may_be_zero) -> frozenset:
  """The layers that may vanish when the layers `may_be_zero` may take
  width 0 (known before any alive vector is: the layers `Vanishing` would
  give a flag).

  Args:
    channels: the channel model of the model.
    may_be_zero: names of the width-taking layers whose width may be 0.

  Returns:
    The names of the layers that may vanish.
  """
  return frozenset(Vanishing(channels, {n: True for n in may_be_zero},
                             _MAY).dead)


class Vanishing(object):
  """Which layers vanish for the widths the alive vectors give.

  Mirrors `plan.RebuildPlan._propagate_vanishing`: an output vanishes when
  its layer's width is 0 or every input of the call vanished (a call
  without inputs vanishes); a layer is vanished as its first call is.

  Attributes:
    dead: {layer name: scalar bool tensor, whether its first call
      vanishes}, for the layers that may vanish (a layer not listed
      stays).
    inputs_dead: {layer name: scalar bool tensor, whether every input of
      its first call vanished}, for the layers where that may happen (a
      layer not listed keeps an input).

  Args:
    channels: the channel model of the model.
    zero: {width-taking layer name: scalar bool tensor, whether none of
      its channels is alive}, for the layers whose width may be 0.
    logic: the `Logic` of the tensors.
  """

  def __init__(self, channels: channel_model_lib.ChannelModel,
               zero: Dict[str, object], logic: Logic):
    self.channels = channels
    self.dead = {}
    self.inputs_dead = {}
    self._logic = logic
    seen = set()
    dead_tensors = {}  # id(Keras tensor) -> bool tensor.
    for layer, inputs, outputs in channels.nodes:
      every_input = (logic.true() if not inputs else
                     self._all([dead_tensors.get(id(t)) for t in inputs]))
      out = self._any([zero.get(layer.name), every_input])
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

  def _all(self, flags: Sequence[Optional[object]]) -> Optional[object]:
    """Logical and (None: statically False, and so the result)."""
    if any(f is None for f in flags):
      return None
    return flags[0] if len(flags) == 1 else self._logic.all_of(list(flags))

  def _any(self, flags: Sequence[Optional[object]]) -> Optional[object]:
    """Logical or, None (statically False) when every flag is None."""
    known = [f for f in flags if f is not None]
    if not known:
      return None
    return known[0] if len(known) == 1 else self._logic.any_of(known)

  def group_live(self, members: List[str]) -> Optional[object]:
    """Whether a channel group has a writer in the rebuilt model.

    Args:
      members: the group's width-taking layers (`ChannelModel.groups()`).

    Returns:
      A scalar bool tensor, False when every member lost all its inputs
      (its channels then vanish with them), or None when that cannot
      happen.
    """
    dead = self._all([self.inputs_dead.get(n) for n in members])
    return None if dead is None else self._logic.not_(dead)

  def group_masks(self) -> Dict[str, object]:
    """{width-taking layer name: its group's `group_live`} for the groups
    that may lose every writer."""
    masks = {}
    for members in self.channels.groups():
      live = self.group_live(members)
      if live is not None:
        masks.update((name, live) for name in members)
    return masks

