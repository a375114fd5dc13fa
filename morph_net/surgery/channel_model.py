"""The channel model of a functional or Sequential Keras model.

Rebuilding to a new structure, transferring weights and costing a structure
all need the same facts about a model: which channels must shrink together
(channel groups), the layout of every tensor's channels (channel spaces) and
which groups cannot change width, and why. `ChannelModel` computes them once
by walking the model's layer graph in run order and asking the layer-rule
registry (`layer_rules`) how each layer maps its input channels to its
output channels. The graph's nodes are layers and the operations Keras 3
records for `keras.ops` calls on symbolic tensors (`op_rules`); both are
"layers" here, keyed by name (`layers` holds the true layers only).
"""

import collections
from typing import Dict, List, Optional, Tuple

import keras

from morph_net import errors
from morph_net.surgery import layer_rule
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import nesting
from morph_net.surgery import spaces

__all__ = ['ChannelModel', 'analyze', 'functional_view']


def functional_view(model):
  """`model` as a functional model whose layer graph can be walked.

  Nested functional and Sequential models are flattened into it (see
  `nesting.flatten_nested`), so their layers are layers of the view.

  Args:
    model: a functional or Sequential Keras model.

  Returns:
    A functional model with the same layers (the model itself if it is one
    without nested models).

  Raises:
    InvalidArgumentError: for a Sequential model without known inputs.
    UnsupportedModelError: for subclassed models and models of tf_keras.
  """
  if not isinstance(model, keras.Model):
    raise errors.UnsupportedModelError(
        'Model %r is a %s.%s, not a Keras 3 model: rebuild and its channel '
        'model read Keras 3 layer graphs only. Build the model with Keras 3 '
        '(unset TF_USE_LEGACY_KERAS) to rebuild it.' %
        (getattr(model, 'name', model), type(model).__module__,
         type(model).__name__))
  if isinstance(model, keras.Sequential):
    if not model.built or not getattr(model, 'inputs', None):
      raise errors.InvalidArgumentError(
          'Sequential model %r is not built with an Input: start it with '
          'keras.Input(shape) (or call model.build) before rebuilding.' %
          model.name)
    view = keras.Model(model.inputs, model.outputs, name=model.name)
    return (nesting.flatten_nested(view) if nesting.has_nested_models(view)
            else view)
  if not hasattr(model, '_nodes_by_depth'):
    raise errors.UnsupportedModelError(
        'Model %r (%s) is a subclassed model, whose layer graph is not known. '
        'rebuild supports functional and Sequential models; for subclassed '
        'models build the layers with '
        'morph_net.surgery.configurable_layers.ConfigurableLayers so their '
        'widths come from the structure.' % (model.name, type(model).__name__))
  if nesting.has_nested_models(model):
    return nesting.flatten_nested(model)
  return model


class ChannelModel(object):
  """Channel groups and channel spaces of a functional or Sequential model.

  Attributes:
    model: the analysed model.
    functional: its functional view (see `functional_view`).
    is_sequential: whether the model is a Sequential model (without nested
      models; those are rebuilt as their functional view).
    rules: the `LayerRules` table used.
    table: the `spaces.GroupTable` of channel groups.
    layers: {layer name: layer} of the top-level layers.
    nodes: [(layer, input tensors, output tensors)] in run order.
    space: {id(Keras tensor): channel space}.
    layer_in: {layer name: input spaces of its first call}.
    layer_out: {layer name: output space of its first call}.

  Args:
    model: a built functional or Sequential Keras model.
    layer_rules: a `LayerRules` table (default: `get_layer_rules()`).

  Raises:
    InvalidArgumentError, UnsupportedModelError: see `functional_view`.
  """

  def __init__(self, model,
               layer_rules: Optional[layer_rules_lib.LayerRules] = None):
    self.model = model
    self.functional = functional_view(model)
    # A Sequential model with nested models is rebuilt as its flat view.
    self.is_sequential = (isinstance(model, keras.Sequential) and
                          not nesting.has_nested_models(model))
    self.rules = layer_rules or layer_rules_lib.get_layer_rules()
    self.table = spaces.GroupTable()
    self._layer_groups = {}  # width-taking layer name -> group id
    self.layers = {l.name: l for l in self.functional.layers}
    self.nodes = []
    self.space = {}
    self.layer_in = {}
    self.layer_out = {}
    self._freezes = []  # (layer name, group id, reason), in run order.
    self._walk()

  def _walk(self):
    nodes_by_depth = self.functional._nodes_by_depth  # pylint: disable=protected-access
    for depth in sorted(nodes_by_depth, reverse=True):
      for node in nodes_by_depth[depth]:
        layer = node.operation
        if node.is_input:
          for tensor in node.outputs:
            self.space[id(tensor)] = spaces.Group(self.table.new(
                layer_rule.num_channels(tensor),
                'it is the model input %r' % layer.name))
          continue
        inputs = list(node.input_tensors)
        in_spaces = [self.space[id(t)] for t in inputs]
        out_space = self._output_space(layer, inputs, in_spaces,
                                       list(node.outputs),
                                       getattr(node, 'arguments', None))
        for tensor in node.outputs:
          self.space[id(tensor)] = out_space
        self.nodes.append((layer, inputs, list(node.outputs)))
        if layer.name not in self.layer_in:
          self.layer_in[layer.name] = in_spaces
          self.layer_out[layer.name] = out_space

  def _output_space(self, layer, inputs, in_spaces, outputs, arguments):
    node = layer_rule.LayerNode(layer, inputs, in_spaces, outputs,
                                self.table, self._layer_groups, arguments,
                                self._freezes)
    if len(outputs) != 1:
      return node.opaque('with several outputs')
    return self.rules.get(layer).output_space(node)

  # Layers and their groups.
  def rule(self, name_or_layer) -> layer_rule.LayerRule:
    """The layer rule of a layer (or of the layer with that name)."""
    layer = (self.layers[name_or_layer] if isinstance(name_or_layer, str)
             else name_or_layer)
    return self.rules.get(layer)

  def source_layers(self) -> List[str]:
    """Names of the width-taking layers, in run order."""
    return list(self._layer_groups)

  def original_width(self, name: str) -> int:
    """The width of a width-taking layer in the model."""
    return self.table.size(self._layer_groups[name])

  def group_of(self, name: str) -> int:
    """The group (root id) of a width-taking layer's output channels."""
    return self.table.find(self._layer_groups[name])

  def groups(self) -> List[List[str]]:
    """Width-taking layers that must share one width, one list per group."""
    by_root = collections.OrderedDict()
    for name in self._layer_groups:
      by_root.setdefault(self.group_of(name), []).append(name)
    return list(by_root.values())

  def output_groups(self):
    """Groups (root ids) whose channels reach a model output."""
    return {gid for t in self.functional.outputs
            for gid in self.space[id(t)].group_ids(self.table)}

  def frozen_reasons(self, name: str) -> List[str]:
    """Why the group of layer `name` cannot change width ([] if it can)."""
    return self.table.frozen_reasons(self._layer_groups[name])

  def frozen_reason(self, name: str, gid: Optional[int] = None
                    ) -> Optional[str]:
    """Why a group of layer `name` cannot change width, told from the layer.

    A group is often frozen by several layers far apart (the residual
    stream of a transformer by its embedding and every attention layer).
    The reason given is the one recorded by the layer nearest to `name` in
    the model graph, walking over the tensors that hold the group's
    channels (among equally near ones, the one that runs last).

    Args:
      name: a layer (or keras.ops operation) of the model.
      gid: the group (default: the group of the width-taking layer
        `name`).

    Returns:
      The reason, or None for a group that can change width.
    """
    root = self.table.find(self._layer_groups[name] if gid is None else gid)
    reasons = self.table.frozen_reasons(root)
    if not reasons:
      return None
    freezers = {}
    for layer_name, frozen, reason in self._freezes:
      if self.table.find(frozen) == root:
        freezers.setdefault(layer_name, reason)
        if layer_name == name and reason.startswith('it is the output of'):
          # The named layer froze its own output: say that, not that the
          # group feeds it.
          freezers[layer_name] = reason
    producer, consumers = self._tensor_links()
    frontier = [i for i, (layer, _, _) in enumerate(self.nodes)
                if layer.name == name]
    seen = set(frontier)
    while frontier:
      near = [i for i in frontier if self.nodes[i][0].name in freezers]
      if near:
        return freezers[self.nodes[max(near)][0].name]
      following = []
      for i in frontier:
        _, inputs, outputs = self.nodes[i]
        for tensor in list(inputs) + list(outputs):
          if root not in self.space[id(tensor)].group_ids(self.table):
            continue
          for j in [producer.get(id(tensor))] + consumers.get(id(tensor), []):
            if j is not None and j not in seen:
              seen.add(j)
              following.append(j)
      frontier = following
    return reasons[0]

  def _tensor_links(self):
    """({tensor id: producing node index}, {tensor id: consuming node
    indices}) over `nodes`."""
    producer, consumers = {}, collections.defaultdict(list)
    for i, (_, inputs, outputs) in enumerate(self.nodes):
      for tensor in outputs:
        producer[id(tensor)] = i
      for tensor in inputs:
        if i not in consumers[id(tensor)]:
          consumers[id(tensor)].append(i)
    return producer, consumers

  def can_change_width(self, name: str) -> Tuple[bool, str]:
    """Whether a structure may give layer `name` another width, and why not.

    Returns:
      (True, '') for a layer whose group may change; (False, reason) for a
      layer whose group is frozen (the reason nearest to the layer, see
      `frozen_reason`) or reaches a model output.
    """
    reason = self.frozen_reason(name)
    if reason:
      return False, reason
    if self.group_of(name) in self.output_groups():
      return False, 'its channels reach a model output'
    return True, ''

  def original_structure(self, changeable_only: bool = True
                         ) -> Dict[str, int]:
    """{layer name: width} of the width-taking layers of the model.

    Args:
      changeable_only: only the layers whose width may change (see
        `can_change_width`); False gives every width-taking layer.

    Returns:
      The original widths, in run order.
    """
    output_groups = self.output_groups() if changeable_only else set()
    return {name: self.original_width(name) for name in self._layer_groups
            if not changeable_only or (
                self.group_of(name) not in output_groups and
                not self.frozen_reasons(name))}

  # Groups and spaces.
  def find(self, gid: int) -> int:
    return self.table.find(gid)

  def group_size(self, gid: int) -> int:
    return self.table.size(gid)

  def is_frozen_group(self, gid: int) -> bool:
    return bool(self.table.frozen_reasons(gid))

  def all_groups(self) -> List[int]:
    return self.table.roots()

  def space_size(self, space: spaces.ChannelSpace) -> int:
    """Channels of a space in the original model."""
    return space.size(self.table)

  def input_spaces(self, name: str) -> List[spaces.ChannelSpace]:
    """Channel spaces of the inputs of layer `name` (its first call)."""
    return list(self.layer_in[name])

  def output_space(self, name: str) -> spaces.ChannelSpace:
    """Channel space of the output of layer `name` (its first call)."""
    return self.layer_out[name]


def analyze(model, layer_rules: Optional[layer_rules_lib.LayerRules] = None
            ) -> ChannelModel:
  """Returns the channel model (groups, widths, spaces) of `model`."""
  return ChannelModel(model, layer_rules)
