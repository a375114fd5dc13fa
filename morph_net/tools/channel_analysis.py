"""Channel analysis of a functional or Sequential Keras model.

Rebuilding to a new structure, transferring weights and costing a structure
all need to know which channels of a model must shrink together. That graph
analysis lives here, apart from the cloning in `rebuild` and the copying in
`weight_transfer`, so cost estimation can use it without either.
"""

import collections
from typing import List, Set

import keras
import numpy as np

__all__ = ['analyze', 'ModelChannels', 'SOURCE_LAYER_TYPES']

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

  def output_groups(self) -> Set[int]:
    """Groups whose channels reach a model output (the output fixes them)."""
    return {gid for t in self.functional.outputs
            for gid in self._groups_in(self.space[id(t)])}

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


def _orig_size(channels, space):
  if space[0] == 'dead':
    return space[1]
  return channels.space_size(space)
