"""ConfigurableLayers: build Keras networks whose widths come from a structure.

The Keras counterpart of the original `configurable_ops.ConfigurableOps`.
Each method creates (and calls) a Keras layer whose number of output
channels is read from a parameterization `{layer name: width}` such as the
JSON written by the structure exporter. A width of 0 makes the layer
*vanish*: the method returns the `VANISHED` marker instead of a tensor, every
layer whose inputs all vanished vanishes too, `concat` skips vanished inputs
and `add` passes the remaining inputs through.

Example:

>>> import keras
>>> layers = ConfigurableLayers({'conv1': 8, 'conv2': 0})
>>> x = keras.Input((16, 16, 3))
>>> y = layers.conv2d(x, 32, 3, name='conv1')
>>> z = layers.conv2d(y, 32, 3, name='conv2')
>>> z is VANISHED
True
>>> layers.add([y, z]) is y
True
"""

from typing import Dict, Optional

import keras

from morph_net import errors

__all__ = ['VANISHED', 'ConfigurableLayers', 'is_vanished',
           'FALLBACK_RULES']

FALLBACK_RULES = ('pass_through', 'strict', 'zero')


class _Vanished(object):
  """Marker returned in place of the output of a layer that vanished."""

  _instance = None

  def __new__(cls):
    if cls._instance is None:
      cls._instance = super().__new__(cls)
    return cls._instance

  def __repr__(self):
    return 'VANISHED'

  def __bool__(self):
    return False


VANISHED = _Vanished()


def is_vanished(value) -> bool:
  """True if `value` is the VANISHED marker."""
  return value is VANISHED


class ConfigurableLayers(object):
  """Creates Keras layers with widths taken from a parameterization.

  Args:
    parameterization: {layer name: width}; None for an empty one.
    fallback_rule: what to do with a layer missing from the
      parameterization: 'pass_through' uses the width passed to the method,
      'strict' raises a MissingWidthError (a KeyError), 'zero' uses width 0 (the layer vanishes).

  Raises:
    InvalidArgumentError: if `fallback_rule` is not one of FALLBACK_RULES.
    StructureError: for a negative width.
    MissingWidthError: later, for a layer missing with 'strict'.
  """

  def __init__(self, parameterization: Optional[Dict[str, int]] = None,
               fallback_rule: str = 'pass_through'):
    if fallback_rule not in FALLBACK_RULES:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `fallback_rule`. Expected one of %s. '
          'Received: fallback_rule=%r' % (FALLBACK_RULES, fallback_rule))
    self._parameterization = dict(parameterization or {})
    for name, width in self._parameterization.items():
      if int(width) < 0:
        raise errors.StructureError(
            'Width of layer %r must be >= 0. Received: %r' % (name, width))
    self._fallback_rule = fallback_rule
    self._constructed = {}  # name -> width actually used.

  @property
  def parameterization(self) -> Dict[str, int]:
    return dict(self._parameterization)

  @property
  def fallback_rule(self) -> str:
    return self._fallback_rule

  @property
  def constructed_widths(self) -> Dict[str, int]:
    """{name: width} of every width-taking layer built so far (0: vanished)."""
    return dict(self._constructed)

  def get_config(self):
    return {'parameterization': self.parameterization,
            'fallback_rule': self._fallback_rule}

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def _width(self, name, default):
    if not name:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `name`. A layer whose width comes from '
          'the parameterization needs a name. Received: name=%r' % (name,))
    if name in self._parameterization:
      width = int(self._parameterization[name])
    elif self._fallback_rule == 'strict':
      raise errors.MissingWidthError(
          'Layer %r is missing from the parameterization and '
          "fallback_rule='strict'. Add it to the structure or use "
          "fallback_rule='pass_through'." % name)
    elif self._fallback_rule == 'zero':
      width = 0
    else:
      width = int(default)
    self._constructed[name] = width
    return width

  def _width_layer(self, layer_class, inputs, width_arg, default, name,
                   kwargs):
    width = self._width(name, default)
    if inputs is VANISHED or width == 0:
      self._constructed[name] = 0
      return VANISHED
    kwargs[width_arg] = width
    return layer_class(name=name, **kwargs)(inputs)

  # Layers whose width is configurable.
  def conv2d(self, inputs, filters, kernel_size, name=None, **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._width_layer(keras.layers.Conv2D, inputs, 'filters',
                             filters, name, kwargs)

  def conv1d(self, inputs, filters, kernel_size, name=None, **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._width_layer(keras.layers.Conv1D, inputs, 'filters',
                             filters, name, kwargs)

  def conv3d(self, inputs, filters, kernel_size, name=None, **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._width_layer(keras.layers.Conv3D, inputs, 'filters',
                             filters, name, kwargs)

  def conv2d_transpose(self, inputs, filters, kernel_size, name=None,
                       **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._width_layer(keras.layers.Conv2DTranspose, inputs,
                             'filters', filters, name, kwargs)

  def separable_conv2d(self, inputs, filters, kernel_size, name=None,
                       **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._width_layer(keras.layers.SeparableConv2D, inputs,
                             'filters', filters, name, kwargs)

  def dense(self, inputs, units, name=None, **kwargs):
    return self._width_layer(keras.layers.Dense, inputs, 'units', units,
                             name, kwargs)

  # Layers whose width follows their input.
  def _follow(self, layer_class, inputs, kwargs):
    if inputs is VANISHED:
      return VANISHED
    return layer_class(**kwargs)(inputs)

  def depthwise_conv2d(self, inputs, kernel_size, **kwargs):
    kwargs['kernel_size'] = kernel_size
    return self._follow(keras.layers.DepthwiseConv2D, inputs, kwargs)

  def batch_norm(self, inputs, **kwargs):
    return self._follow(keras.layers.BatchNormalization, inputs, kwargs)

  def activation(self, inputs, activation, **kwargs):
    kwargs['activation'] = activation
    return self._follow(keras.layers.Activation, inputs, kwargs)

  def max_pool2d(self, inputs, pool_size=2, **kwargs):
    kwargs['pool_size'] = pool_size
    return self._follow(keras.layers.MaxPooling2D, inputs, kwargs)

  def avg_pool2d(self, inputs, pool_size=2, **kwargs):
    kwargs['pool_size'] = pool_size
    return self._follow(keras.layers.AveragePooling2D, inputs, kwargs)

  def global_avg_pool2d(self, inputs, **kwargs):
    return self._follow(keras.layers.GlobalAveragePooling2D, inputs, kwargs)

  def flatten(self, inputs, **kwargs):
    return self._follow(keras.layers.Flatten, inputs, kwargs)

  def dropout(self, inputs, rate, **kwargs):
    kwargs['rate'] = rate
    return self._follow(keras.layers.Dropout, inputs, kwargs)

  def layer(self, layer, inputs):
    """Calls any channel-following Keras `layer` unless `inputs` vanished."""
    if inputs is VANISHED:
      return VANISHED
    return layer(inputs)

  # Merges.
  def concat(self, inputs, axis=-1, name=None):
    """Concatenates the inputs that did not vanish (VANISHED if none)."""
    live = [x for x in inputs if x is not VANISHED]
    if not live:
      return VANISHED
    if len(live) == 1:
      return live[0]
    return keras.layers.Concatenate(axis=axis, name=name)(live)

  def add(self, inputs, name=None):
    """Adds the inputs that did not vanish; one live input passes through."""
    live = [x for x in inputs if x is not VANISHED]
    if not live:
      return VANISHED
    if len(live) == 1:
      return live[0]
    return keras.layers.Add(name=name)(live)
