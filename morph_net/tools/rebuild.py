"""Rebuild a Keras model with the widths of a learned structure.

`rebuild(model, structure)` returns a new Keras model (through
`keras.models.clone_model`) with the same layer names and topology, whose
width-taking layers (Conv*, Conv*Transpose, SeparableConv*, Dense) get the
widths of `structure` ({layer name: width}, the JSON written by the structure
exporter). Layers that follow their input (batch norm, activations, pooling,
depthwise convs, ...) get the new channel count from the rebuilt shapes.

Zero-width layers vanish with everything that depends only on them: an `Add`
with one live input becomes that input (a dead residual branch disappears and
its skip stays), a `Concatenate` skips dead inputs (a dead Inception tower is
dropped).

Channels that must be removed together form groups (the layers whose outputs
are added or multiplied, and the layers that follow them); every width-taking
layer of a group must get the same width, which is checked.

With `transfer_weights=True` the surviving channels' weights are copied, so
the identity structure reproduces the original outputs exactly.

This module is the entry point: the graph analysis lives in
`channel_analysis` and the weight copying in `weight_transfer`, and their
public names are re-exported here so callers need one import.
"""

import difflib
from typing import Dict, Optional

import keras
import numpy as np

from morph_net.tools.channel_analysis import _ADD_TYPES
from morph_net.tools.channel_analysis import _channels
from morph_net.tools.channel_analysis import _layer_desc
from morph_net.tools.channel_analysis import _orig_size
from morph_net.tools.channel_analysis import _width_attr
from morph_net.tools.channel_analysis import analyze
from morph_net.tools.channel_analysis import ModelChannels
from morph_net.tools.channel_analysis import SOURCE_LAYER_TYPES
from morph_net.tools.configurable_layers import FALLBACK_RULES, VANISHED
from morph_net.tools.weight_transfer import _transfer
from morph_net.tools.weight_transfer import choose_kept_channels

__all__ = ['rebuild', 'analyze', 'ModelChannels', 'choose_kept_channels',
           'SOURCE_LAYER_TYPES']

L = keras.layers


class _Plan(object):
  """Widths, vanished tensors and effective channel spaces for a structure."""

  def __init__(self, channels: ModelChannels, structure: Dict[str, int],
               fallback_rule='pass_through'):
    self.channels = channels
    self.widths = self._resolve_widths(structure, fallback_rule)
    self.group_width = {}
    for name, width in self.widths.items():
      self.group_width[channels.group_of(name)] = width
    self.vanished = set()  # layer names whose (first) output vanished
    self.eff_in = {}
    self.eff_out = {}
    self.live_inputs = {}  # layer name -> indices of live inputs
    self._propagate_vanishing()

  def _resolve_widths(self, structure, fallback_rule):
    ch = self.channels
    if fallback_rule not in FALLBACK_RULES:
      raise ValueError(
          'Invalid value for argument `fallback_rule`. Expected one of %s. '
          'Received: fallback_rule=%r' % (FALLBACK_RULES, fallback_rule))
    sources = ch.source_layers()
    unknown = sorted(set(structure) - set(sources))
    if unknown:
      name = unknown[0]
      if name in ch.layers:
        hint = ('it is a %s, whose width follows its input; only %s layers '
                'take a width' % (type(ch.layers[name]).__name__, '/'.join(
                    sorted(set(t.__name__ for t in SOURCE_LAYER_TYPES)))))
      else:
        close = difflib.get_close_matches(name, sources, n=1)
        hint = 'no such layer in model %r%s' % (
            ch.model.name, ('; did you mean %r?' % close[0]) if close else '')
      raise ValueError('Structure names layer %r, but %s. Structure layers '
                       'not in the model: %s.' % (name, hint, unknown))
    widths = {}
    for name in sources:
      if name in structure:
        width = int(structure[name])
      elif fallback_rule == 'strict':
        raise KeyError(
            'Layer %r (%s) is missing from the structure and '
            "fallback_rule='strict'. Add it or use fallback_rule="
            "'pass_through'." % (name, type(ch.layers[name]).__name__))
      elif fallback_rule == 'zero':
        width = 0
      else:
        width = ch.original_width(name)
      if width < 0:
        raise ValueError('Width of layer %r must be >= 0. Received: %d' %
                         (name, width))
      widths[name] = width
    for group in ch.groups():
      group_widths = {n: widths[n] for n in group}
      if len(set(group_widths.values())) > 1:
        raise ValueError(
            'Layers %s form one channel group (their outputs are added, '
            'multiplied or normalised together) and must have equal widths. '
            'Received: %s. Give every layer of the group the same width.' %
            (group, ', '.join('%s=%d' % kv for kv in group_widths.items())))
      width = group_widths[group[0]]
      reasons = ch.frozen_reasons(group[0])
      if reasons and width != ch.original_width(group[0]):
        raise ValueError(
            'The width of layers %s cannot change (%d -> %d): %s. Keep their '
            'original width in the structure.' %
            (group, ch.original_width(group[0]), width, reasons[0]))
    return widths

  def _propagate_vanishing(self):
    ch = self.channels
    dead_tensors = set()
    eff = {}  # id(tensor) -> effective space
    for t in ch.functional.inputs:
      eff[id(t)] = ch.space[id(t)]
    for layer, inputs, outputs in ch.nodes:
      dead = [id(t) in dead_tensors for t in inputs]
      in_eff = [eff.get(id(t), ch.space[id(t)]) for t in inputs]
      live = [i for i, d in enumerate(dead) if not d]
      out_dead = False
      if isinstance(layer, SOURCE_LAYER_TYPES) and (
          self.widths[layer.name] == 0):
        out_dead = True
      elif not live:
        out_dead = True
      elif len(live) < len(inputs) and not isinstance(
          layer, _ADD_TYPES + (L.Concatenate,)):
        dead_names = [inputs[i].name for i, d in enumerate(dead) if d]
        raise ValueError(
            'Layer %s has inputs that vanished (all their channels have '
            'width 0: %s) and others that did not; only Add and Concatenate '
            'can drop vanished inputs. Keep a nonzero width for the layers '
            'feeding it.' % (_layer_desc(layer), dead_names))
      if out_dead:
        out_eff = ('dead', _channels(outputs[0]))
      elif isinstance(layer, L.Concatenate):
        out_eff = ('cat', tuple(
            ('dead', _channels(t)) if d else s
            for t, s, d in zip(inputs, in_eff, dead)))
      elif isinstance(layer, _ADD_TYPES):
        out_eff = in_eff[live[0]]
      else:
        out_eff = ch.space[id(outputs[0])]
        if not isinstance(layer, SOURCE_LAYER_TYPES) and len(inputs) == 1:
          out_eff = _substitute(out_eff, ch.space[id(inputs[0])], in_eff[0])
      for t in outputs:
        eff[id(t)] = out_eff
        if out_dead:
          dead_tensors.add(id(t))
      if layer.name not in self.eff_in:
        self.eff_in[layer.name] = in_eff
        self.eff_out[layer.name] = out_eff
        self.live_inputs[layer.name] = live
        if out_dead:
          self.vanished.add(layer.name)
    for t in ch.functional.outputs:
      if id(t) in dead_tensors:
        zero = sorted(n for n, w in self.widths.items() if w == 0)
        raise ValueError(
            'Model output %r vanished: every path to it goes through a layer '
            'of width 0 (width-0 layers: %s). Keep at least one live path.' %
            (t.name, zero))

  def width(self, space) -> int:
    return len(self.indices(space))

  def indices(self, space, kept=None):
    """Original channel indices kept in `space` (given kept per group)."""
    kind = space[0]
    if kind == 'dead':
      return np.zeros([0], np.int64)
    if kind == 'g':
      gid = self.channels.find(space[1])
      if kept is not None and gid in kept:
        return kept[gid]
      width = self.group_width.get(gid, self.channels.group_size(gid))
      return np.arange(width)
    if kind == 'cat':
      parts, offset = [], 0
      for s in space[1]:
        parts.append(self.indices(s, kept) + offset)
        offset += _orig_size(self.channels, s)
      return np.concatenate(parts) if parts else np.zeros([0], np.int64)
    inner = self.indices(space[1], kept)
    k = space[2]
    if kind == 'rep':  # Depthwise channel c*k + j.
      return (inner[:, None] * k + np.arange(k)[None, :]).reshape([-1])
    channels = _orig_size(self.channels, space[1])  # flat: p*C + c
    return (np.arange(k)[:, None] * channels + inner[None, :]).reshape([-1])


def _substitute(space, old, new):
  """Replaces the sub-space `old` of `space` by `new` (for dead segments)."""
  if space == old:
    return new
  if space[0] in ('rep', 'flat'):
    return (space[0], _substitute(space[1], old, new), space[2])
  return space


def _clone_function(plan):
  def clone(layer):
    config = layer.get_config()
    if isinstance(layer, SOURCE_LAYER_TYPES) and layer.name in plan.widths:
      width = plan.widths[layer.name]
      if width > 0:
        config[_width_attr(layer)] = width
    return layer.__class__.from_config(config)
  return clone


def _call_function(widths):
  """clone_model call_function that propagates VANISHED markers."""
  def call(layer, *args, **kwargs):
    inputs = args[0] if args else None
    if isinstance(inputs, (list, tuple)):
      live = [x for x in inputs if x is not VANISHED]
      if not live:
        return VANISHED
      if len(live) < len(inputs):
        if len(live) == 1:
          return live[0]
        return layer(live, *args[1:], **kwargs)
    elif inputs is VANISHED:
      return VANISHED
    if widths.get(layer.name, 1) == 0:
      return VANISHED
    return layer(*args, **kwargs)
  return call


def rebuild(model, structure: Dict[str, int], transfer_weights: bool = False,
            alive_masks: Optional[Dict[str, np.ndarray]] = None,
            fallback_rule: str = 'pass_through'):
  """Returns a copy of `model` with the widths of `structure`.

  Args:
    model: a built functional or Sequential Keras model.
    structure: {layer name: width} for width-taking layers (Conv*, Dense...).
    transfer_weights: copy the surviving channels' weights from `model`.
    alive_masks: optional {layer name: bool vector} choosing the surviving
      channels of each group; by default the channels with the largest
      batch-norm |gamma| (or kernel norm) of the group survive.
    fallback_rule: for width-taking layers missing from `structure`:
      'pass_through' keeps the original width, 'strict' raises, 'zero'
      makes them vanish.

  Returns:
    A new Keras model of the same class (Sequential or functional).

  Raises:
    TypeError: for subclassed models.
    ValueError: if the structure names unknown layers, gives different
      widths to one group, changes a group that cannot change, or makes a
      model output vanish.
  """
  channels = analyze(model)
  plan = _Plan(channels, structure, fallback_rule)
  clone = _clone_function(plan)
  if isinstance(model, keras.Sequential):
    if plan.vanished:
      raise ValueError('Sequential model %r cannot drop layers %s.' %
                       (model.name, sorted(plan.vanished)))
    new_model = keras.models.clone_model(model, clone_function=clone)
  else:
    new_model = keras.models.clone_model(
        model, clone_function=clone,
        call_function=_call_function(plan.widths))
  if transfer_weights:
    kept = choose_kept_channels(model, plan, alive_masks)
    _transfer(model, new_model, plan, kept)
  return new_model
