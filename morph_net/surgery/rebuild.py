"""Rebuild a Keras model with the widths of a learned structure.

`rebuild(model, structure)` returns a new Keras model (through
`keras.models.clone_model`) with the same layer names and topology, whose
width-taking layers (Conv*, Conv*Transpose, SeparableConv*, Dense, and any
custom layer whose rule has a `width_attribute`) get the widths of
`structure` ({layer name: width}, the JSON written by the structure
exporter). Layers that follow their input (batch norm, activations, pooling,
depthwise convs, ...) get the new channel count from the rebuilt shapes.

Layers of nested functional and Sequential models (a `keras.applications`
base under a new head) are narrowed like any other (the analysis sees the
flat view, `nesting.flatten_nested`), and the rebuilt model keeps the
nesting: the narrower base is a nested model of the same name under the
same head (`nesting.clone_nested`), so `new.get_layer(base_name).trainable
= False` fine-tunes the head as on the original. Only when a nested model
would lose some (not all) of its inputs or outputs is the model rebuilt
flat (logged).

Zero-width layers vanish with everything that depends only on them: an `Add`
with one live input becomes that input (a dead residual branch disappears and
its skip stays), a `Concatenate` skips dead inputs (a dead Inception tower is
dropped).

Channels that must be removed together form groups (the layers whose outputs
are added or multiplied, and the layers that follow them); every width-taking
layer of a group must get the same width, which is checked.

With `transfer_weights=True` the surviving channels' weights are copied, so
the identity structure reproduces the original outputs exactly; and the
constant outputs of removed channels (a dead channel's batch-norm beta
through its activation) are folded into the biases or batch-norm means of
the layers that consumed them (`folding`), so the rebuilt model computes
what the regularized model computed with its dead channels exactly dead
(exact except at the borders of zero-padded convolutions and where the
constants pass a nonlinearity; logged).

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

from typing import Dict, Optional, Tuple

from absl import logging
import keras
import numpy as np

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.surgery import channel_model
from morph_net.surgery import configurable_layers
from morph_net.surgery import folding
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import nesting
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import weight_transfer

__all__ = ['rebuild', 'compile_without_morph_net', 'is_alive_source',
           'resolve_structure']

VANISHED = configurable_layers.VANISHED
_ON_GROWTH = ('raise', 'initialize')


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


def is_alive_source(structure) -> bool:
  """Whether `structure` is an object giving its own alive channels.

  Duck typing, so that surgery does not import the Keras bridge (which
  imports surgery): any object with callable `alive_counts()` ({layer name:
  width}) and `alive_vectors()` ({layer name: bool vector}) methods, such
  as `morph_net.keras.ModelRegularizer`.
  """
  return (callable(getattr(structure, 'alive_counts', None)) and
          callable(getattr(structure, 'alive_vectors', None)))


def resolve_structure(structure, alive_masks=None
                      ) -> Tuple[Dict[str, int], Optional[Dict]]:
  """The widths and alive masks a `rebuild` structure argument stands for.

  Args:
    structure: {layer name: width}, or an object with `alive_counts()` and
      `alive_vectors()` (see `is_alive_source`).
    alive_masks: explicit masks; they override the object's alive vectors.

  Returns:
    ({layer name: width}, alive masks or None).

  Raises:
    InvalidArgumentTypeError: for a structure that is neither.
  """
  if is_alive_source(structure):
    vectors = structure.alive_vectors()
    if alive_masks is None:
      alive_masks = vectors
    return ({name: int(np.sum(v)) for name, v in vectors.items()},
            alive_masks)
  if not isinstance(structure, dict):
    raise errors.InvalidArgumentTypeError(
        'Invalid value for argument `structure`. Expected a dict {layer '
        'name: width} (e.g. read with structure_files.read_structure) or an '
        'object with alive_counts() and alive_vectors() methods (a '
        'morph_net.keras.ModelRegularizer). Received: %r (%s)' %
        (structure, type(structure).__name__))
  return structure, alive_masks


def _clone_keeping_nesting(model, channels, plan, clone):
  """The clone of a model nesting models, nested as it is (else flat)."""
  try:
    return nesting.clone_nested(model, clone, _call_function(plan.widths),
                                VANISHED)
  except nesting.NotNestableError as e:
    logging.warning('Rebuilding model %r flat (its nested models become '
                    'layers of one functional model): %s.', model.name, e)
  return keras.models.clone_model(
      channels.functional, clone_function=clone,
      call_function=_call_function(plan.widths))


def rebuild(model, structure, transfer_weights: bool = False,
            alive_masks: Optional[Dict[str, np.ndarray]] = None,
            fallback_rule: str = 'pass_through',
            layer_rules: Optional[layer_rules_lib.LayerRules] = None,
            channels: Optional[channel_model.ChannelModel] = None,
            fold_constants: bool = True, on_growth: str = 'raise'):
  """Returns a copy of `model` with the widths of `structure`.

  Args:
    model: a built functional or Sequential Keras model.
    structure: {layer name: width} for width-taking layers (Conv*,
      Dense...); or the regularizer that trained `model` (any object with
      `alive_counts()` and `alive_vectors()` methods, such as
      `morph_net.keras.ModelRegularizer`): its alive counts are the widths
      and its alive vectors choose the surviving channels, so the rebuilt
      model keeps exactly the channels the regularizer calls alive.
    transfer_weights: copy the surviving channels' weights from `model`.
    alive_masks: optional {layer name: bool vector} choosing the surviving
      channels of each group (overrides a regularizer's alive vectors); by
      default the channels with the largest batch-norm |gamma| (or kernel
      norm) of the group survive.
    fallback_rule: for width-taking layers missing from `structure`:
      'pass_through' keeps the original width, 'strict' raises, 'zero'
      makes them vanish.
    layer_rules: the layer-rule table (default: `get_layer_rules()`, the
      built-in rules plus those registered with `register_layer_rule`).
    channels: the channel model of `model` if it was analysed already (for
      example `StructureCost.channels`); `layer_rules` is then not used.
    fold_constants: with `transfer_weights`, fold the constant outputs of
      removed channels into the layers consuming them (see `folding`);
      False copies the surviving weights only.
    on_growth: with `transfer_weights`, what a group that grows (an
      expanded structure) does: 'raise' (a WeightTransferError), or
      'initialize': the layers it touches keep their fresh initialization,
      with the old weights in their first channels where the layout allows
      (see `weight_transfer.transfer_weights`); constants are not folded.
      With alive masks (or a regularizer), only the alive channels are
      copied: a group wider than its alive count grows from them, so
      channels that were dead do not start dead.

  Returns:
    A new Keras model of the same class (Sequential or functional). If
    `model` is compiled, it is compiled the same way without MorphNet's
    loss term and metrics (see `compile_without_morph_net`): it does not
    train with MorphNet.

  Raises:
    UnsupportedModelError: for subclassed models (a TypeError).
    InvalidArgumentTypeError: for a structure that is neither a dict nor
      an object with alive counts and vectors.
    InvalidArgumentError: for `channels` of another model, or an unknown
      `on_growth`.
    StructureError: if the structure names unknown layers, gives different
      widths to one group, changes a group that cannot change, or makes a
      model output vanish; or a Sequential model would lose layers.
    MissingWidthError: for a missing layer with fallback_rule='strict'.
    WeightTransferError: see `weight_transfer`.
  """
  if on_growth not in _ON_GROWTH:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `on_growth`. Expected one of %s. '
        'Received: on_growth=%r' % (_ON_GROWTH, on_growth))
  structure, alive_masks = resolve_structure(structure, alive_masks)
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
  elif channels.functional is model:
    new_model = keras.models.clone_model(
        model, clone_function=clone,
        call_function=_call_function(plan.widths))
  else:
    # `channels.functional` is the flat view of a model nesting models.
    new_model = _clone_keeping_nesting(model, channels, plan, clone)
    _copy_compile(model, new_model)
  compile_without_morph_net(new_model)
  if transfer_weights:
    kept = weight_transfer.choose_kept_channels(
        model, plan, alive_masks, allow_growth=on_growth == 'initialize')
    grown = weight_transfer.grown_groups(plan, kept)
    weight_transfer.transfer_weights(model, new_model, plan, kept, grown)
    if grown:
      logging.info('Groups of %s grow: fresh weights where they do, and no '
                   'constant folding.', [
                       n for n in channels.source_layers()
                       if channels.group_of(n) in grown])
    elif fold_constants and _removes_channels(plan, kept):
      folding.fold_constants(new_model, plan, kept)
  return new_model


def _removes_channels(plan, kept) -> bool:
  """Whether a channel of the model is not in the rebuilt one."""
  ch = plan.channels
  return bool(plan.vanished) or any(
      len(indices) < ch.group_size(gid) for gid, indices in kept.items())
