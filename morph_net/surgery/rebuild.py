"""Rebuild a Keras model with the widths of a learned structure.

`rebuild(model, structure)` returns a new Keras model (through
`keras.models.clone_model`) with the same layer names and topology, whose
width-taking layers (Conv*, Conv*Transpose, SeparableConv*, Dense, and any
custom layer whose rule has a `width_attribute`) get the widths of
`structure` ({layer name: width}, the JSON written by the structure
exporter). Layers that follow their input (batch norm, activations, pooling,
depthwise convs, ...) get the new channel count from the rebuilt shapes.

Layers of nested functional and Sequential models (a `keras.applications`
base under a new head) are narrowed like any other: the model is rebuilt as
its flat functional view (`nesting.flatten_nested`), with the same layer
names.

Zero-width layers vanish with everything that depends only on them: an `Add`
with one live input becomes that input (a dead residual branch disappears and
its skip stays), a `Concatenate` skips dead inputs (a dead Inception tower is
dropped).

Channels that must be removed together form groups (the layers whose outputs
are added or multiplied, and the layers that follow them); every width-taking
layer of a group must get the same width, which is checked.

With `transfer_weights=True` the surviving channels' weights are copied, so
the identity structure reproduces the original outputs exactly.

A compiled model (for example right after training with MorphNet's
`wrap_loss` and `metrics()`) rebuilds too. The rebuilt model is compiled
like the original without MorphNet's parts: every loss or metric with a
`without_morph_net()` method is replaced by what it returns (the MorphNet
loss by its data loss; MorphNet metrics are dropped), and the optimizer is
a new one of the same configuration. Train it with your usual recipe.

Every step asks the layer rules (`layer_rules`): the channel model
(`channel_model`), the plan (`plan`), the clone below and the weight copy
(`weight_transfer`).
"""

from typing import Dict, Optional

import keras
import numpy as np

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.surgery import channel_model
from morph_net.surgery import configurable_layers
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import weight_transfer

__all__ = ['rebuild', 'compile_without_morph_net']

VANISHED = configurable_layers.VANISHED


def _clone_function(plan):
  """clone_model clone_function giving width-taking layers their new width."""
  def clone(layer):
    config = layer.get_config()
    rule = plan.channels.rule(layer)
    width = plan.widths.get(layer.name)
    if rule.width_attribute and width:
      config[rule.width_attribute] = width
    return layer.__class__.from_config(plan.layer_config(layer, config))
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


def _copy_compile(model, new_model) -> None:
  """Compiles `new_model` as `model` is (as clone_model does for a clone)."""
  if getattr(model, 'compiled', False):
    new_model.compile_from_config(model.get_compile_config())


def compile_without_morph_net(model) -> bool:
  """Compiles `model` again without MorphNet's losses and metrics, if any.

  Objects with a `without_morph_net()` method (`morph_net.keras`'s
  MorphNetLoss and MorphNetMetric) are replaced by what it returns; None
  drops a metric. Other compile arguments are kept; the optimizer is a new
  one of the same configuration.

  Args:
    model: a Keras model, compiled or not.

  Returns:
    Whether the model was compiled again (it had MorphNet parts).
  """
  arguments = compat.compile_arguments(model)
  if not arguments:
    return False
  found = []

  def strip(obj):
    without = getattr(obj, 'without_morph_net', None)
    if not callable(without):
      return obj
    found.append(obj)
    return without()

  stripped = compat.map_compile_objects(arguments, strip)
  if found:
    model.compile(**stripped)
  return bool(found)


def rebuild(model, structure: Dict[str, int], transfer_weights: bool = False,
            alive_masks: Optional[Dict[str, np.ndarray]] = None,
            fallback_rule: str = 'pass_through',
            layer_rules: Optional[layer_rules_lib.LayerRules] = None,
            channels: Optional[channel_model.ChannelModel] = None):
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
    layer_rules: the layer-rule table (default: `get_layer_rules()`, the
      built-in rules plus those registered with `register_layer_rule`).
    channels: the channel model of `model` if it was analysed already (for
      example `StructureCost.channels`); `layer_rules` is then not used.

  Returns:
    A new Keras model of the same class (Sequential or functional). If
    `model` is compiled, it is compiled the same way without MorphNet's
    loss term and metrics (see `compile_without_morph_net`): it does not
    train with MorphNet.

  Raises:
    UnsupportedModelError: for subclassed models (a TypeError).
    InvalidArgumentError: for `channels` of another model.
    StructureError: if the structure names unknown layers, gives different
      widths to one group, changes a group that cannot change, or makes a
      model output vanish; or a Sequential model would lose layers.
    MissingWidthError: for a missing layer with fallback_rule='strict'.
    WeightTransferError: see `weight_transfer`.
  """
  if channels is None:
    channels = channel_model.analyze(model, layer_rules)
  elif channels.model is not model:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `channels`: it is the channel model of '
        'model %r, not of %r. Pass the channel model of the model to '
        'rebuild, or none.' % (channels.model.name, model.name))
  plan = plan_lib.RebuildPlan(channels, structure, fallback_rule)
  clone = _clone_function(plan)
  if channels.is_sequential:
    new_model = keras.models.clone_model(model, clone_function=clone)
  else:
    # `channels.functional` is `model`, or its flat view if it nests models.
    new_model = keras.models.clone_model(
        channels.functional, clone_function=clone,
        call_function=_call_function(plan.widths))
    if channels.functional is not model:
      _copy_compile(model, new_model)
  compile_without_morph_net(new_model)
  if transfer_weights:
    kept = weight_transfer.choose_kept_channels(model, plan, alive_masks)
    weight_transfer.transfer_weights(model, new_model, plan, kept)
  return new_model
