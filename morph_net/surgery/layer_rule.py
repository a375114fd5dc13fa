"""The layer-rule protocol: what model surgery needs to know about a layer.

A `LayerRule` describes one kind of Keras layer for the channel model, the
rebuild plan, the weight transfer and structure costing:

* `output_space(node)`: the channel space of the layer's output, given the
  spaces of its inputs (see `spaces`); this is where the layer joins
  channel groups (an `Add` merges the groups of its inputs), starts one (a
  conv), or declares it cannot follow its inputs (`node.opaque(why)`).
* `width_attribute`: the config key of the output width ('filters',
  'units') for layers whose width is chosen by a structure; None for layers
  whose width follows their input.
* `accepts_vanished_inputs` (or `accepts_vanished`) and
  `live_output_space`: what the layer's output is when some of its inputs
  vanished (width 0).
* `clone_config` and `sized_config`: the config the rebuilt layer is made
  from (`sized_config` also gets the rebuilt output width, for a reshape
  whose target names it).
* `transfer_weights`: the layer's weights restricted to surviving channels.
* `channel_scores` / `normalizer_scores`: how important each output channel
  is, to choose which channels survive.
* `op_widths`: the channel counts of the graph ops the layer traces to.
* `costed_ops`: the cost hook, the multiply-add ops of one call of the
  layer from its config, for the layer-level regularizer (`layer_cost`);
  `activation_ops`: the activation-count hook, those of the ops whose
  output channels an activation count counts.
* `affine`, `channelwise` and `constant_channels`: what constant folding
  (`folding`) needs: whether the layer is an affine map of its input (then
  activation), whether each output channel depends on its own input
  channel only, and how to make removed output channels constant.

Built-in Keras layers have rules (`builtin_rules`), and so have the
operations Keras 3 records for `keras.ops` calls on symbolic tensors in a
functional model (`op_rules`: `ops.relu(x)`, `ops.add(a, b)`, `x * 2.0`,
`ops.mean(x, axis=[1, 2])`, ...); rules read "layer" as either. A custom
layer gets one
through `layer_rules.register_layer_rule(MyLayer, MyRule())` or a per-model
`LayerRules` table. A rule instance must not keep per-model state: one rule
serves every layer of its type.
"""

import collections
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np

from morph_net import errors
from morph_net.surgery import layer_cost
from morph_net.surgery import spaces

__all__ = ['LayerRule', 'LayerNode', 'ChannelSelection', 'describe_layer',
           'num_channels', 'is_channel_axis', 'UNKNOWN']

# Why an opaque layer's channels cannot follow its inputs, in messages.
UNKNOWN = 'whose channel handling is unknown to rebuild'

# The surviving channels of one layer, as original indices: `input_indices`
# of its first input (None for a layer without inputs), `output_indices` of
# its output, which had `output_channels` channels in the original model;
# `inputs_indices` of each of its inputs, in the order of the call's input
# tensors (None when unknown); `layer_indices` of the layer's own group
# when it is not its output's (the heads of a MultiHeadAttention; None
# otherwise or when unknown).
ChannelSelection = collections.namedtuple(
    'ChannelSelection', ['input_indices', 'output_indices',
                         'output_channels', 'inputs_indices',
                         'layer_indices'], defaults=(None, None))


def describe_layer(layer) -> str:
  """`'name' (Type)` for messages; `'name' (keras.ops Type)` for the
  operation nodes keras.ops calls record in functional models."""
  kind = type(layer).__name__
  if not isinstance(layer, keras.layers.Layer):
    kind = 'keras.ops ' + kind
  return '%r (%s)' % (layer.name, kind)


def num_channels(tensor) -> int:
  """The size of the last dimension of a (Keras) tensor.

  A tensor without a channel axis (a scalar, or one value per example, as
  a reduction over every axis returns) counts as one channel.
  """
  if len(tensor.shape) <= 1:
    return 1
  return int(tensor.shape[-1])


def is_channel_axis(axis: int, rank: int) -> bool:
  """Whether `axis` (negative or not) of a rank-`rank` tensor is its last
  (channel) axis."""
  return rank > 0 and axis in (-1, rank - 1)


class LayerNode(object):
  """One call of a layer while the channel model is built.

  Rules read the call's tensors and spaces and change the group table only
  through these methods.

  Attributes:
    layer: the Keras layer (or `keras.ops` operation).
    inputs: its input tensors (KerasTensors), flattened.
    input_spaces: the channel space of each input.
    outputs: its output tensors.
    args, kwargs: the call's arguments as the model recorded them (tensors
      and constants, e.g. `(x, 2.0)` for `x * 2.0`); empty when unknown.
  """

  def __init__(self, layer, inputs: Sequence, input_spaces: Sequence,
               outputs: Sequence, table: spaces.GroupTable,
               layer_groups: dict, arguments=None,
               freezes: Optional[list] = None):
    self.layer = layer
    self.inputs = list(inputs)
    self.input_spaces = list(input_spaces)
    self.outputs = list(outputs)
    self.args = tuple(getattr(arguments, 'args', ()) or ())
    self.kwargs = dict(getattr(arguments, 'kwargs', {}) or {})
    self._table = table
    self._layer_groups = layer_groups
    # (layer name, group id, reason) of every freezing by this call.
    self._freezes = freezes if freezes is not None else []

  def space_of(self, tensor) -> Optional[spaces.ChannelSpace]:
    """The channel space of an input tensor of this call (None if `tensor`
    is not one, e.g. a constant argument)."""
    for known, space in zip(self.inputs, self.input_spaces):
      if known is tensor:
        return space
    return None

  @property
  def table(self) -> spaces.GroupTable:
    return self._table

  def describe(self) -> str:
    return describe_layer(self.layer)

  def output_channels(self) -> int:
    return num_channels(self.outputs[0])

  def input_rank(self, index: int = 0) -> int:
    return len(self.inputs[index].shape)

  def new_group(self, size: int,
                frozen_reason: Optional[str] = None) -> spaces.Group:
    """A new group of `size` channels (frozen if a reason is given)."""
    gid = self._table.new(size, frozen_reason)
    if frozen_reason:
      self._freezes.append((self.layer.name, gid, frozen_reason))
    return spaces.Group(gid)

  def layer_group(self) -> spaces.Group:
    """The group of this layer's output channels, one per layer.

    A shared layer (called several times) gets the same group every call.
    """
    name = self.layer.name
    if name not in self._layer_groups:
      self._layer_groups[name] = self._table.new(self.output_channels())
    return spaces.Group(self._layer_groups[name])

  def share_group(self, group: spaces.Group) -> spaces.Group:
    """Makes `group` the group of this width-taking layer's output.

    For a layer whose output channel c is its input channel c's and whose
    config still takes the width (a conv with as many groups as channels):
    the structure names it, with the width of its input's group.
    """
    name = self.layer.name
    if name in self._layer_groups:
      self._table.union(self._layer_groups[name], group.gid)
    else:
      self._layer_groups[name] = group.gid
    return group

  def freeze(self, space: spaces.ChannelSpace, reason: str) -> None:
    """Marks every group of `space` as unable to change width."""
    for gid in space.group_ids(self._table):
      self._table.freeze(gid, reason)
      self._freezes.append((self.layer.name, gid, reason))

  def union(self, a: spaces.ChannelSpace, b: spaces.ChannelSpace) -> None:
    """Merges the groups of two spaces whose channels meet elementwise.

    Spaces with different layouts cannot be merged; their groups are frozen
    instead, naming this layer.
    """
    if isinstance(a, spaces.Group) and isinstance(b, spaces.Group):
      self._table.union(a.gid, b.gid)
      return
    pairs = a.aligned_parts(b, self._table)
    if pairs is None:
      reason = 'layer %s merges channels laid out differently' % (
          self.describe())
      self.freeze(a, reason)
      self.freeze(b, reason)
      return
    for x, y in pairs:
      self.union(x, y)

  def opaque(self, why: str) -> spaces.Group:
    """The output of a layer whose channels cannot follow its inputs.

    Freezes the input groups and returns a new frozen group, both with a
    reason naming this layer and `why`.
    """
    for space in self.input_spaces:
      self.freeze(space, 'it feeds layer %s, %s' % (self.describe(), why))
    return self.new_group(
        self.output_channels(),
        'it is the output of layer %s, %s' % (self.describe(), why))


class LayerRule(object):
  """How one kind of Keras layer treats channels (see the module docstring).

  Subclasses override `output_space` and whatever else differs from the
  defaults, which describe a layer without weights whose single output has
  the channels of its single input.
  """

  # Config key of the output width (e.g. 'filters'); None: follows input.
  width_attribute: Optional[str] = None
  # Whether the layer may keep running when some inputs vanished (Add,
  # Concatenate); other layers with a vanished input raise.
  accepts_vanished_inputs: bool = False
  # Whether the layer computes `activation(A(x))` with A affine in its one
  # input and an `activation` config key (conv, dense, depthwise ...):
  # constant folding measures A and shifts its bias.
  affine: bool = False
  # Whether each output channel depends only on the input channel(s) of
  # the same index (activations, pooling, batch norm, Add, Concatenate ...).
  # A layer that is neither affine nor channelwise (layer norm over the
  # channels, attention, unknown layers) cannot take folded constants, but
  # for the recurrent layers folding knows (their input biases).
  channelwise: bool = True

  def accepts_vanished(self, layer) -> bool:
    """Whether `layer` may drop vanished inputs (default:
    `accepts_vanished_inputs`; a rule may decide per layer, e.g. from its
    axis)."""
    del layer
    return self.accepts_vanished_inputs

  def output_space(self, node: LayerNode) -> spaces.ChannelSpace:
    """The channel space of the layer's output for this call."""
    if len(node.input_spaces) != 1:
      return node.opaque(UNKNOWN)
    return node.input_spaces[0]

  def live_output_space(self, layer, output_space: spaces.ChannelSpace,
                        input_spaces: Sequence[spaces.ChannelSpace],
                        live_input_spaces: Sequence[spaces.ChannelSpace],
                        vanished: Sequence[bool],
                        input_channels: Sequence[int]
                        ) -> spaces.ChannelSpace:
    """The output space once vanished inputs are taken out.

    Args:
      layer: the Keras layer.
      output_space: its output space in the original model.
      input_spaces: its input spaces in the original model.
      live_input_spaces: the input spaces after vanishing (an input may now
        hold `Dead` parts).
      vanished: for each input, whether it vanished entirely.
      input_channels: each input's channel count in the original model.

    Returns:
      The output space, in which dead sub-spaces replace vanished ones.
    """
    del vanished, input_channels
    if self.width_attribute is None and len(input_spaces) == 1:
      return output_space.replace(input_spaces[0], live_input_spaces[0])
    return output_space

  def clone_config(self, layer, config: dict) -> dict:
    """The config the rebuilt layer is made from (default: `config`).

    Args:
      layer: the original Keras layer.
      config: its `get_config()`, with the new width already set.

    Returns:
      The config to pass to `from_config`.
    """
    del layer
    return config

  def sized_config(self, layer, config: dict, output_width: int) -> dict:
    """The rebuilt layer's config once its output width is known.

    Called after `clone_config` for every layer that does not vanish; the
    default returns `config`. A reshape whose target shape names the
    channel count sets it here.

    Args:
      layer: the original Keras layer (or operation).
      config: the config `clone_config` returned.
      output_width: the channels of its (first) output in the rebuilt model.

    Returns:
      The config to pass to `from_config`.
    """
    del layer, output_width
    return config

  def transfer_weights(self, layer, weights: List[np.ndarray],
                       new_shapes: Sequence[Tuple[int, ...]],
                       selection: ChannelSelection) -> List[np.ndarray]:
    """The layer's weights restricted to the surviving channels.

    The default keeps weights whose shape does not change and slices those
    whose last axis holds the output channels (batch norm, PReLU).

    Args:
      layer: the original Keras layer.
      weights: its weights as numpy arrays, in `layer.weights` order.
      new_shapes: the shapes of the rebuilt layer's weights, same order.
      selection: the surviving input and output channels.

    Returns:
      The new weights, in the same order.

    Raises:
      WeightTransferError: for a weight that does not follow the channels.
    """
    values = []
    for weight, shape in zip(weights, new_shapes):
      if tuple(weight.shape) == tuple(shape):
        values.append(weight)
      elif weight.ndim and weight.shape[-1] == selection.output_channels:
        values.append(np.take(weight, selection.output_indices, axis=-1))
      else:
        raise errors.WeightTransferError(
            'Cannot transfer the weights of layer %s: a weight of shape %s '
            'does not follow its %d channels. Register a LayerRule for %s '
            'that transfers them, or use transfer_weights=False.' %
            (describe_layer(layer), weight.shape,
             selection.output_channels, type(layer).__name__))
    return values

  def constant_channels(self, layer, weights: List[np.ndarray],
                        removed: np.ndarray) -> Optional[List[np.ndarray]]:
    """Weights making the `removed` output channels constant (input-free).

    Constant folding builds a probe of the model in which every removed
    channel is exactly constant, as the regularizer calls it dead: a batch
    norm's gamma (or a source layer's kernel columns) set to 0.

    Args:
      layer: the Keras layer.
      weights: its weights as numpy arrays, in `layer.weights` order.
      removed: indices of its output channels that the rebuild removes.

    Returns:
      The new weights, or None if this layer does not silence channels.
    """
    del layer, weights, removed
    return None

  def channel_scores(self, layer) -> Optional[np.ndarray]:
    """Importance of each output channel from the layer's own weights.

    Used for groups without a batch norm; None if the layer has no opinion.
    """
    del layer
    return None

  def normalizer_scores(self, layer) -> Optional[np.ndarray]:
    """Importance of each channel of a normalizing layer (|gamma|), or None.

    When a group has a normalizer, its scores decide which channels survive.
    """
    del layer
    return None

  def op_widths(self, layer, input_width: int, output_width: int,
                depthwise_op: bool) -> Tuple[int, int]:
    """Input and output channel counts of one graph op of the layer.

    Args:
      layer: the Keras layer.
      input_width: channels of the layer's input in the rebuilt model.
      output_width: channels of the layer's output in the rebuilt model.
      depthwise_op: whether the op is a depthwise convolution.

    Returns:
      (input channels, output channels) of the op.
    """
    del layer, depthwise_op
    return input_width, output_width

  def costed_ops(self, call) -> Optional[List]:
    """The multiply-add ops of one call of the layer (the cost hook).

    The layer-level regularizer, which runs on every Keras backend, costs a
    model from these (see `layer_cost`). The default says a layer without
    arithmetic (`layer_cost.holds_arithmetic`) has no ops, and that the
    ops of any other layer are unknown.

    Args:
      call: a `layer_cost.LayerCall`.

    Returns:
      A list of `layer_cost.CostedOp` ([] for a layer without arithmetic),
      or None when this rule does not know the layer's arithmetic (the
      layer-level regularizer then refuses the model, naming the layer).
    """
    if layer_cost.holds_arithmetic(call.layer):
      return None
    return []

  def activation_ops(self, call, costed_ops) -> List:
    """The ops of one call whose output channels an activation count
    counts (the activation-count hook).

    The graph engine's activation count (`activation_count_function`)
    counts the alive output channels of every conv and matmul op a model
    traces to; the layer-level regularizer counts those of the ops this
    hook returns. The default counts every op of the cost hook: each is a
    multiply the layer traces to. A rule whose layer traces to multiplies
    the graph engine does not count (a recurrent loop, cut out of its
    analysis) returns fewer; the layer-level regularizer warns, naming
    the layer, when it returns none of ops that multiply channels. An op
    whose output is `layer_cost.Fixed` counts its channels, always alive.

    Args:
      call: a `layer_cost.LayerCall`.
      costed_ops: this rule's `costed_ops(call)` (a list).

    Returns:
      A list of ops of `costed_ops` (the objects given: the layer-level
      regularizer refuses any other).
    """
    del call
    return list(costed_ops)
