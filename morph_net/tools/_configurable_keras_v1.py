"""tf_keras (Keras 2) layers whose widths come from a parameterization.

Private to `configurable_ops`, which exports these names: the original's
`ConfigurableConv2D`, `ConfigurableSeparableConv2D`, `ConfigurableDense`,
`PassThroughKerasLayerWrapper` and `hijack_keras_module`, for networks built
with `tf.compat.v1.keras.layers` in a TF1 graph. (Keras 3 models are rebuilt
by `morph_net.surgery.configurable_layers` and `rebuild` instead.)
"""

import collections
import functools
import importlib

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.tools import _configurable_common as common
from morph_net.tools import structure_exporter

__all__ = ['ConfigurableConv2D', 'ConfigurableSeparableConv2D',
           'ConfigurableDense', 'PassThroughKerasLayerWrapper',
           'hijack_keras_module']

try:
  # `tf.compat.v1.keras.layers` and `tf.compat.v1.layers` as TF exports them
  # with TF_USE_LEGACY_KERAS=1.
  keras_layers = importlib.import_module('tf_keras.api._v1.keras.layers')
  tf_layers = importlib.import_module(
      'tf_keras.api._v1.keras.__internal__.legacy.layers')
except ImportError as e:
  raise errors.MissingDependencyError(
      'The TF1 Keras layers of configurable_ops need tf_keras, which could '
      'not be imported: %s. Install it with: pip install "morph-net[slim]".'
      % e) from e


class _ConfigurableLayerMixin(object):
  """Sets a tf_keras layer's width from a parameterization when it builds.

  The op name looked up is `<name scope of the layer>/<suffix>` for each
  suffix of `op_suffixes`; at most one of them may be in the
  parameterization. Subclasses set `num_outputs_attr` (the layer attribute
  holding the width) and `default_op_suffix` (the op the layer creates).

  Args:
    sentinel: must not be given (the arguments are keyword-only).
    parameterization: {op name: width}.
    constructed_ops: a dict the layer records {op name: width} into when it
      builds (`hijack_keras_module` shares one between its layers).
    is_strict: the op name must be in the parameterization.
    **kwargs: arguments of the Keras layer.

  Raises:
    InvalidArgumentError: for a positional argument or a bad width.
  """

  num_outputs_attr = None
  default_op_suffix = None

  def __init__(self, sentinel=None, parameterization=None,
               constructed_ops=None, is_strict=False, **kwargs):
    if sentinel is not None:
      raise errors.InvalidArgumentError(
          '%s takes keyword arguments only; got the positional argument %r. '
          'Pass the layer arguments (filters=..., kernel_size=...) by name.'
          % (type(self).__name__, sentinel))
    self.parameterization = common.checked_parameterization(parameterization)
    self.constructed_ops = (constructed_ops if constructed_ops is not None
                            else collections.OrderedDict())
    self.is_strict = is_strict
    # Set by build: whether the width is 0, and the rank of the inputs.
    self.is_null_op = False
    self._input_rank = None
    super().__init__(**kwargs)

  @property
  def op_suffixes(self):
    return [self.default_op_suffix]

  def _get_op_name(self):
    """The parameterization key of this layer (or the op name it creates).

    Raises:
      KeyLookupError: if several suffixes match, or none does and the layer
        is strict.
    """
    scope = tf.compat.v1.get_default_graph().get_name_scope()
    # A layer name ending in '/' gives a scope ending in '/'.
    separator = '' if self.name.endswith('/') else '/'
    candidates = [scope + separator + suffix for suffix in self.op_suffixes]
    matches = [name for name in candidates if name in self.parameterization]
    if len(matches) > 1:
      raise errors.KeyLookupError(
          'Layer %r (%s) matches several op names of the parameterization: '
          '%s. Keep only one of them.' % (self.name, type(self).__name__,
                                          matches))
    if matches:
      return matches[0]
    if self.is_strict:
      raise errors.KeyLookupError(
          'Layer %r (%s): none of the op names %s is in the parameterization '
          '(is_strict=True). Add one of them or pass is_strict=False.' % (
              self.name, type(self).__name__, candidates))
    return scope + separator + self.default_op_suffix

  def build(self, input_shape):
    self._input_rank = len(input_shape)
    op_name = self._get_op_name()
    width = self.parameterization.get(op_name,
                                      getattr(self, self.num_outputs_attr))
    if op_name in self.constructed_ops:
      logging.warning('%s: op %s was constructed twice; constructed_ops '
                      'keeps the last width.', type(self).__name__, op_name)
    self.constructed_ops[op_name] = width
    self.is_null_op = width == 0
    setattr(self, self.num_outputs_attr, width)
    super().build(input_shape)

  def __call__(self, inputs, *args, **kwargs):
    if common.is_vanished(inputs):
      return common.VANISHED
    outputs = super().__call__(inputs, *args, **kwargs)
    # Keras needs `call` to return a tensor: a 0-wide layer builds an op with
    # 0 channels, whose output is dropped here.
    return common.VANISHED if self.is_null_op else outputs


class ConfigurableConv2D(_ConfigurableLayerMixin, keras_layers.Conv2D):
  """tf_keras Conv2D whose `filters` come from the parameterization.

  Op names: `<scope>/ConfigurableConv2D` (the op this layer creates) or
  `<scope>/Conv2D` (the op a plain Conv2D of that name created).
  """
  num_outputs_attr = 'filters'
  default_op_suffix = 'ConfigurableConv2D'

  @property
  def op_suffixes(self):
    return ['Conv2D', 'ConfigurableConv2D']


class ConfigurableSeparableConv2D(_ConfigurableLayerMixin,
                                  keras_layers.SeparableConv2D):
  """tf_keras SeparableConv2D; op name `<scope>/separable_conv2d`."""
  num_outputs_attr = 'filters'
  default_op_suffix = 'separable_conv2d'


class ConfigurableDense(_ConfigurableLayerMixin, keras_layers.Dense):
  """tf_keras Dense whose `units` come from the parameterization.

  Op names: `<scope>/Tensordot/MatMul` (the original's only name, the op
  Dense creates for inputs of rank > 2) or `<scope>/MatMul` (the op it
  creates for rank 2, and the name the structure exporter writes then).
  """
  num_outputs_attr = 'units'

  @property
  def op_suffixes(self):
    return ['Tensordot/MatMul', 'MatMul']

  @property
  def default_op_suffix(self):
    return 'MatMul' if self._input_rank == 2 else 'Tensordot/MatMul'


class PassThroughKerasLayerWrapper(object):
  """Creates and calls a Keras layer unless its inputs vanished.

  A single vanished input gives VANISHED. For a list input (merge layers such
  as Add or Concatenate) vanished items are dropped: none left gives
  VANISHED, one left is returned as it is, more are merged by the layer.

  Args:
    keras_layer_class: the Keras layer class to create.
    *args_for_keras_layer: its positional arguments.
    **kwargs_for_keras_layer: its keyword arguments.
  """

  def __init__(self, keras_layer_class, *args_for_keras_layer,
               **kwargs_for_keras_layer):
    self.keras_layer_class = keras_layer_class
    self.args_for_keras_layer = args_for_keras_layer
    self.kwargs_for_keras_layer = kwargs_for_keras_layer
    self.keras_layer_instance = None

  def __call__(self, inputs, *args, **kwargs):
    if isinstance(inputs, (list, tuple)):
      inputs = [t for t in inputs if not common.is_vanished(t)]
      if len(inputs) <= 1:
        return inputs[0] if inputs else common.VANISHED
    elif common.is_vanished(inputs):
      return common.VANISHED
    self.keras_layer_instance = self.keras_layer_class(
        *self.args_for_keras_layer, **self.kwargs_for_keras_layer)
    return self.keras_layer_instance(inputs, *args, **kwargs)


_CONFIGURABLE_CLASSES = (('Conv2D', ConfigurableConv2D),
                         ('SeparableConv2D', ConfigurableSeparableConv2D),
                         ('Dense', ConfigurableDense))
_PASS_THROUGH_CLASSES = ('BatchNormalization', 'Activation', 'UpSampling2D',
                         'Add', 'Concatenate', 'Multiply')


def hijack_keras_module(parameterization_or_file, module,
                        fallback_rule=common.FallbackRule.pass_through,
                        remove_common_prefix=False,
                        keep_first_channel_alive=True):
  """Replaces a module's Keras layer classes with configurable ones.

  `module.Conv2D`, `module.SeparableConv2D` and `module.Dense` (where the
  module has them) become the Configurable* layers with this
  parameterization; `BatchNormalization`, `Activation`, `UpSampling2D`,
  `Add`, `Concatenate` and `Multiply` become `PassThroughKerasLayerWrapper`s,
  so that vanished layers propagate. Undo with `recover_module_functions`.

  Args:
    parameterization_or_file: {op name: width} or the path of a JSON file.
    module: the module (or object) whose attributes are replaced, e.g. one
      that did `from tensorflow.compat.v1.keras.layers import Conv2D`.
    fallback_rule: a `FallbackRule` or its name; only `strict` changes
      anything here (an op missing from the parameterization is an error).
    remove_common_prefix: drop the first scope of all op names when they
      all share it (see `structure_exporter.get_remove_common_prefix_fn`).
    keep_first_channel_alive: raise widths of 0 to 1, so that no layer
      vanishes.

  Returns:
    (constructed_ops, originals): the {op name: width} dict the layers fill
    when they build, and {attribute name: original class} for
    `recover_module_functions`.

  Raises:
    InvalidArgumentError: if `parameterization_or_file` is neither a dict
      nor a string, or a width is not an integer >= 0.
    KeyLookupError: if `fallback_rule` names no rule.
  """
  parameterization = parameterization_or_file or {}
  if isinstance(parameterization, str):
    parameterization = common.read_parameterization_file(parameterization)
  elif not isinstance(parameterization, dict):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `parameterization_or_file`. Expected a '
        'dict {op name: width} or the path of a JSON file. Received: %s.' %
        type(parameterization).__name__)
  parameterization = common.checked_parameterization(parameterization)
  if remove_common_prefix:
    rename = structure_exporter.get_remove_common_prefix_fn(parameterization)
    parameterization = {rename(k): v for k, v in parameterization.items()}
  if keep_first_channel_alive:
    parameterization = {k: max(v, 1) for k, v in parameterization.items()}
  is_strict = (common.get_fallback_rule(fallback_rule) ==
               common.FallbackRule.strict)

  constructed_ops = collections.OrderedDict()
  replacements = {
      name: functools.partial(layer_class, parameterization=parameterization,
                              constructed_ops=constructed_ops,
                              is_strict=is_strict)
      for name, layer_class in _CONFIGURABLE_CLASSES}
  for name in _PASS_THROUGH_CLASSES:
    replacements[name] = functools.partial(PassThroughKerasLayerWrapper,
                                           getattr(keras_layers, name))
  originals = {}
  for name, replacement in replacements.items():
    if hasattr(module, name):
      originals[name] = getattr(module, name)
      setattr(module, name, replacement)
  return constructed_ops, originals
