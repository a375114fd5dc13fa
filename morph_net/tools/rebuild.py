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
"""

import collections
import difflib
from typing import Dict, List, Optional

from absl import logging
import keras
import numpy as np

from morph_net.tools.configurable_layers import FALLBACK_RULES, VANISHED

__all__ = ['rebuild', 'analyze', 'ModelChannels', 'transfer_weights',
           'SOURCE_LAYER_TYPES']

L = keras.layers

# Layers whose output width is a config argument.
SOURCE_LAYER_TYPES = (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose,
                      L.Conv2DTranspose, L.Conv3DTranspose, L.SeparableConv1D,
                      L.SeparableConv2D, L.Dense)
_DEPTHWISE_TYPES = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_TRANSPOSE_TYPES = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_SEPARABLE_TYPES = (L.SeparableConv1D, L.SeparableConv2D)
# Layers whose output channels are their input channels.
_PASS_THROUGH_TYPES = (
    L.BatchNormalization, L.LayerNormalization, L.Activation, L.ReLU,
    L.LeakyReLU, L.PReLU, L.ELU, L.Softmax, L.Dropout, L.SpatialDropout1D,
    L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.MaxPooling1D, L.MaxPooling2D,
    L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D,
    L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D,
    L.UpSampling2D, L.UpSampling3D, L.Identity, L.ActivityRegularization)
# Merges that tolerate vanished inputs.
_ADD_TYPES = (L.Add,)
# Elementwise merges: their inputs share channels, no vanished input allowed.
_ELEMENTWISE_MERGE_TYPES = (L.Subtract, L.Multiply, L.Average, L.Maximum,
                            L.Minimum)


def _layer_desc(layer):
  return '%r (%s)' % (layer.name, type(layer).__name__)


def _width_attr(layer):
  return 'units' if isinstance(layer, L.Dense) else 'filters'


def _channels(tensor):
  return int(tensor.shape[-1])


def _flatten_inputs(node):
  return list(node.input_tensors)


class ModelChannels(object):
  """Channel analysis of a functional (or Sequential) Keras model.

  Every tensor gets a *channel space*, a nested tuple:
    ('g', gid)            the channels of group `gid`;
    ('cat', (s1, s2...))  a concatenation;
    ('rep', s, k)         a depthwise conv with depth multiplier k;
    ('flat', s, p)        a Flatten over p spatial positions;
    ('dead', n)           n channels of an input that vanished.
  Groups are merged with union-find when tensors are added or multiplied.

  Args:
    model: a built functional or Sequential Keras model.

  Raises:
    TypeError: for subclassed models.
  """

  def __init__(self, model):
    self.model = model
    self.functional = _functional_view(model)
    self._parent = {}
    self._size = {}
    self._frozen = collections.defaultdict(list)
    self._group_of_layer = {}  # source layer name -> gid
    self.layers = {l.name: l for l in self.functional.layers}
    self.nodes = []  # (layer, input tensors, output tensors) in run order.
    self.space = {}  # id(KerasTensor) -> space
    self.layer_in = {}  # layer name -> list of input spaces (first call)
    self.layer_out = {}  # layer name -> output space (first call)
    self._analyze()

  # Union-find.
  def _new_group(self, size, frozen_reason=None):
    gid = len(self._parent)
    self._parent[gid] = gid
    self._size[gid] = size
    if frozen_reason:
      self._frozen[gid].append(frozen_reason)
    return gid

  def find(self, gid):
    while self._parent[gid] != gid:
      self._parent[gid] = self._parent[self._parent[gid]]
      gid = self._parent[gid]
    return gid

  def _union_groups(self, a, b):
    a, b = self.find(a), self.find(b)
    if a != b:
      self._parent[b] = a
      self._frozen[a].extend(self._frozen.pop(b, []))

  def _groups_in(self, space):
    kind = space[0]
    if kind == 'g':
      return [self.find(space[1])]
    if kind == 'cat':
      return [g for s in space[1] for g in self._groups_in(s)]
    if kind in ('rep', 'flat'):
      return self._groups_in(space[1])
    return []

  def _freeze(self, space, reason):
    for gid in self._groups_in(space):
      self._frozen[gid].append(reason)

  def _union(self, a, b, layer):
    if a[0] == b[0] == 'g':
      self._union_groups(a[1], b[1])
    elif (a[0] == b[0] == 'cat' and len(a[1]) == len(b[1]) and
          all(self.space_size(x) == self.space_size(y)
              for x, y in zip(a[1], b[1]))):
      for x, y in zip(a[1], b[1]):
        self._union(x, y, layer)
    elif a[0] == b[0] and a[0] in ('rep', 'flat') and a[2] == b[2]:
      self._union(a[1], b[1], layer)
    else:
      reason = ('layer %s merges channels laid out differently' %
                _layer_desc(layer))
      self._freeze(a, reason)
      self._freeze(b, reason)

  def space_size(self, space):
    kind = space[0]
    if kind == 'g':
      return self._size[space[1]]
    if kind == 'cat':
      return sum(self.space_size(s) for s in space[1])
    if kind in ('rep', 'flat'):
      return self.space_size(space[1]) * space[2]
    return space[1]  # dead

  # Analysis.
  def _analyze(self):
    nodes_by_depth = self.functional._nodes_by_depth  # pylint: disable=protected-access
    for depth in sorted(nodes_by_depth, reverse=True):
      for node in nodes_by_depth[depth]:
        layer = node.operation
        if node.is_input:
          for t in node.outputs:
            self.space[id(t)] = ('g', self._new_group(
                _channels(t), 'it is the model input %r' % layer.name))
          continue
        inputs = _flatten_inputs(node)
        in_spaces = [self.space[id(t)] for t in inputs]
        out_space = self._propagate(layer, inputs, in_spaces, node.outputs)
        for t in node.outputs:
          self.space[id(t)] = out_space
        self.nodes.append((layer, inputs, list(node.outputs)))
        if layer.name not in self.layer_in:
          self.layer_in[layer.name] = in_spaces
          self.layer_out[layer.name] = out_space

  def _unknown(self, layer, in_spaces, outputs, why):
    reason = 'it feeds layer %s, %s' % (_layer_desc(layer), why)
    for s in in_spaces:
      self._freeze(s, reason)
    return ('g', self._new_group(
        _channels(outputs[0]),
        'it is the output of layer %s, %s' % (_layer_desc(layer), why)))

  def _propagate(self, layer, inputs, in_spaces, outputs):
    unknown_why = 'whose channel handling is unknown to rebuild'
    if len(outputs) != 1:
      return self._unknown(layer, in_spaces, outputs, 'with several outputs')
    out_c = _channels(outputs[0])
    if isinstance(layer, SOURCE_LAYER_TYPES):
      if getattr(layer, 'groups', 1) != 1:
        for s in in_spaces:
          self._freeze(s, 'it feeds the grouped conv %s' % _layer_desc(layer))
      if layer.name not in self._group_of_layer:
        self._group_of_layer[layer.name] = self._new_group(out_c)
      return ('g', self._group_of_layer[layer.name])
    if len(in_spaces) == 1 and isinstance(layer, _DEPTHWISE_TYPES):
      k = int(layer.depth_multiplier)
      return in_spaces[0] if k == 1 else ('rep', in_spaces[0], k)
    if len(in_spaces) == 1 and isinstance(layer, _PASS_THROUGH_TYPES):
      axis = getattr(layer, 'axis', -1)
      rank = len(inputs[0].shape)
      if (isinstance(axis, int) and axis not in (-1, rank - 1)) or (
          out_c != _channels(inputs[0])):
        return self._unknown(layer, in_spaces, outputs,
                             'which does not act on the last axis')
      if getattr(layer, 'data_format', 'channels_last') == 'channels_first':
        return self._unknown(layer, in_spaces, outputs,
                             'which uses channels_first')
      return in_spaces[0]
    if len(in_spaces) == 1 and isinstance(layer, L.Flatten):
      rank = len(inputs[0].shape)
      if rank <= 2:
        return in_spaces[0]
      positions = int(np.prod(inputs[0].shape[1:-1]))
      return ('flat', in_spaces[0], positions)
    if isinstance(layer, L.Concatenate):
      rank = len(outputs[0].shape)
      if layer.axis not in (-1, rank - 1):
        return self._unknown(layer, in_spaces, outputs,
                             'which concatenates along axis %d' % layer.axis)
      return ('cat', tuple(in_spaces))
    if isinstance(layer, _ADD_TYPES + _ELEMENTWISE_MERGE_TYPES):
      same = [s for s, t in zip(in_spaces, inputs) if _channels(t) == out_c]
      for s, t in zip(in_spaces, inputs):
        if _channels(t) != out_c:  # Broadcast input (e.g. 1 channel).
          self._freeze(s, 'it is broadcast by layer %s' % _layer_desc(layer))
      for s in same[1:]:
        self._union(same[0], s, layer)
      return same[0] if same else self._unknown(layer, in_spaces, outputs,
                                                'which broadcasts channels')
    return self._unknown(layer, in_spaces, outputs, unknown_why)

  # Queries.
  def source_layers(self) -> List[str]:
    """Names of the width-taking layers, in graph order."""
    return list(self._group_of_layer)

  def original_width(self, name) -> int:
    return self._size[self._group_of_layer[name]]

  def group_of(self, name) -> int:
    return self.find(self._group_of_layer[name])

  def groups(self) -> List[List[str]]:
    """Width-taking layers that must share one width, one list per group."""
    by_root = collections.OrderedDict()
    for name in self._group_of_layer:
      by_root.setdefault(self.group_of(name), []).append(name)
    return list(by_root.values())

  def frozen_reasons(self, name) -> List[str]:
    """Why the group of `name` cannot change width ([] if it can)."""
    return list(self._frozen.get(self.group_of(name), []))

  def group_size(self, gid) -> int:
    return self._size[self.find(gid)]

  def is_frozen_group(self, gid) -> bool:
    return bool(self._frozen.get(self.find(gid)))

  def all_groups(self):
    return sorted(set(self.find(g) for g in self._parent))


def _functional_view(model):
  if isinstance(model, keras.Sequential):
    if not model.built or not getattr(model, 'inputs', None):
      raise ValueError(
          'Sequential model %r is not built with an Input: start it with '
          'keras.Input(shape) (or call model.build) before rebuilding.' %
          model.name)
    return keras.Model(model.inputs, model.outputs, name=model.name)
  if not hasattr(model, '_nodes_by_depth'):
    raise TypeError(
        'Model %r (%s) is a subclassed model, whose layer graph is not known. '
        'rebuild supports functional and Sequential models; for subclassed '
        'models build the layers with '
        'morph_net.tools.configurable_layers.ConfigurableLayers so their '
        'widths come from the structure.' % (model.name, type(model).__name__))
  return model


def analyze(model) -> ModelChannels:
  """Returns the channel analysis (groups, widths) of `model`."""
  return ModelChannels(model)


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


def _orig_size(channels, space):
  if space[0] == 'dead':
    return space[1]
  return channels.space_size(space)


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


def choose_kept_channels(model, plan, alive_masks=None):
  """{group id: sorted kept channel indices} for the widths of `plan`."""
  ch = plan.channels
  alive_masks = dict(alive_masks or {})
  unknown = sorted(set(alive_masks) - set(ch.source_layers()))
  if unknown:
    raise ValueError('alive_masks names layers %s that are not width-taking '
                     'layers of model %r.' % (unknown, model.name))
  scores = collections.defaultdict(lambda: 0.0)
  masks = {}
  for name in ch.source_layers():
    gid = ch.group_of(name)
    if name in alive_masks:
      mask = np.asarray(alive_masks[name], bool).reshape([-1])
      if gid in masks and not np.array_equal(masks[gid][1], mask):
        raise ValueError(
            'alive_masks of %r and %r differ, but the layers are in one '
            'channel group.' % (masks[gid][0], name))
      masks[gid] = (name, mask)
  # Batch-norm |gamma| of the layers that normalise each group.
  has_bn = set()
  for name, layer in ch.layers.items():
    if isinstance(layer, L.BatchNormalization) and layer.scale:
      space = ch.layer_in.get(name, [None])[0]
      if space and space[0] == 'g':
        gid = ch.find(space[1])
        scores[gid] = scores[gid] + np.abs(
            keras.ops.convert_to_numpy(layer.gamma))
        has_bn.add(gid)
  for name in ch.source_layers():
    gid = ch.group_of(name)
    if gid in has_bn:
      continue
    kernel = keras.ops.convert_to_numpy(_kernel(ch.layers[name]))
    axis = -2 if isinstance(ch.layers[name], _TRANSPOSE_TYPES) else -1
    kernel = np.moveaxis(kernel, axis, -1).reshape([-1, kernel.shape[axis]])
    scores[gid] = scores[gid] + np.sqrt((kernel ** 2).sum(axis=0))
  kept = {}
  for gid, width in plan.group_width.items():
    size = ch.group_size(gid)
    if width > size:
      raise ValueError(
          'Cannot transfer weights: group of layers %s grows from %d to %d '
          'channels. Use transfer_weights=False for wider structures.' %
          ([n for n in ch.source_layers() if ch.group_of(n) == gid], size,
           width))
    if gid in masks:
      name, mask = masks[gid]
      if mask.size != size or int(mask.sum()) != width:
        if width == 0:
          kept[gid] = np.zeros([0], np.int64)
          continue
        raise ValueError(
            'alive_masks[%r] has %d of %d channels alive, but the structure '
            'gives width %d.' % (name, int(mask.sum()), mask.size, width))
      kept[gid] = np.flatnonzero(mask)
    else:
      order = np.argsort(-np.asarray(scores[gid]), kind='stable')
      kept[gid] = np.sort(order[:width])
  return kept


def _kernel(layer):
  if isinstance(layer, _SEPARABLE_TYPES):
    return layer.pointwise_kernel
  return layer.kernel


def _take(array, axis, idx):
  return np.take(array, idx, axis=axis)


def _transfer(model, new_model, plan, kept):
  ch = plan.channels
  old_layers = {l.name: l for l in model.layers}
  for new_layer in new_model.layers:
    if not new_layer.weights or new_layer.name not in plan.eff_out:
      continue
    old = old_layers[new_layer.name]
    name = new_layer.name
    in_space = plan.eff_in[name][0] if plan.eff_in[name] else None
    in_idx = plan.indices(in_space, kept) if in_space else None
    out_idx = plan.indices(plan.eff_out[name], kept)
    old_w = [keras.ops.convert_to_numpy(w) for w in old.weights]
    new_shapes = [tuple(w.shape) for w in new_layer.weights]
    if isinstance(old, _SEPARABLE_TYPES):
      k = int(old.depth_multiplier)
      rep = (in_idx[:, None] * k + np.arange(k)[None, :]).reshape([-1])
      values = [_take(old_w[0], -2, in_idx),
                _take(_take(old_w[1], -2, rep), -1, out_idx)] + [
                    _take(w, -1, out_idx) for w in old_w[2:]]
    elif isinstance(old, _TRANSPOSE_TYPES):
      values = [_take(_take(old_w[0], -1, in_idx), -2, out_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    elif isinstance(old, SOURCE_LAYER_TYPES):
      values = [_take(_take(old_w[0], -2, in_idx), -1, out_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    elif isinstance(old, _DEPTHWISE_TYPES):
      values = [_take(old_w[0], -2, in_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    else:
      values = []
      orig_c = _orig_size(ch, ch.layer_out[name])
      for w, shape in zip(old_w, new_shapes):
        if w.shape == shape:
          values.append(w)
        elif w.ndim and w.shape[-1] == orig_c:
          values.append(_take(w, -1, out_idx))
        else:
          raise ValueError(
              'Cannot transfer the weights of layer %s: weight of shape %s '
              'does not follow its %d channels. Use transfer_weights=False.'
              % (_layer_desc(old), w.shape, orig_c))
    for value, shape in zip(values, new_shapes):
      if tuple(value.shape) != shape:
        raise ValueError(
            'Cannot transfer the weights of layer %s: computed shape %s, '
            'rebuilt layer has %s.' % (_layer_desc(old), value.shape, shape))
    new_layer.set_weights(values)
  logging.info('Transferred weights into %r.', new_model.name)
