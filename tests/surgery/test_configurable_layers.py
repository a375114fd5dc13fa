"""Tests for morph_net.surgery.configurable_layers."""

import keras
import numpy as np
import pytest

from morph_net.surgery import configurable_layers as cl
from morph_net.surgery.configurable_layers import VANISHED


def _inception(layers, x):
  t1 = layers.batch_norm(layers.conv2d(x, 4, 1, name='t1'))
  t2 = layers.conv2d(layers.conv2d(x, 6, 1, name='t2a'), 5, 3,
                     padding='same', name='t2b')
  return layers.concat([t1, t2])


def test_widths_from_parameterization_and_vanishing():
  layers = cl.ConfigurableLayers({'t1': 3, 't2a': 0})
  x = keras.Input((8, 8, 3))
  y = _inception(layers, x)
  assert y.shape[-1] == 3  # The t2 tower vanished, concat passes t1.
  assert layers.constructed_widths == {'t1': 3, 't2a': 0, 't2b': 0}


def test_add_passes_remaining_input_and_follow_layers_vanish():
  layers = cl.ConfigurableLayers({'branch': 0})
  x = keras.Input((8, 8, 4))
  b = layers.conv2d(x, 4, 3, padding='same', name='branch')
  assert b is VANISHED
  assert layers.batch_norm(b) is VANISHED
  assert layers.activation(b, 'relu') is VANISHED
  assert layers.depthwise_conv2d(b, 3) is VANISHED
  assert layers.dense(b, 3, name='fc') is VANISHED
  assert layers.add([x, b]) is x
  assert layers.add([b, b]) is VANISHED
  assert layers.concat([b]) is VANISHED
  assert not VANISHED and repr(VANISHED) == 'VANISHED'
  assert cl.is_vanished(b)


def test_fallback_rules():
  x = keras.Input((8, 8, 3))
  assert cl.ConfigurableLayers().conv2d(x, 7, 1, name='c').shape[-1] == 7
  assert cl.ConfigurableLayers(fallback_rule='zero').conv2d(
      x, 7, 1, name='c') is VANISHED
  with pytest.raises(KeyError, match="'c' is missing.*strict"):
    cl.ConfigurableLayers(fallback_rule='strict').conv2d(x, 7, 1, name='c')
  with pytest.raises(ValueError, match="fallback_rule='nope'"):
    cl.ConfigurableLayers(fallback_rule='nope')
  with pytest.raises(ValueError, match='needs a name'):
    cl.ConfigurableLayers().conv2d(x, 7, 1)
  with pytest.raises(ValueError, match="'c' must be >= 0"):
    cl.ConfigurableLayers({'c': -1})


def test_all_width_layers_and_config_roundtrip():
  layers = cl.ConfigurableLayers(
      {'c': 2, 't': 3, 's': 4, 'd': 5, 'c1': 2}, fallback_rule='strict')
  x = keras.Input((8, 8, 3))
  assert layers.conv2d_transpose(x, 9, 3, name='t').shape[-1] == 3
  assert layers.separable_conv2d(x, 9, 3, name='s').shape[-1] == 4
  y = layers.max_pool2d(layers.conv2d(x, 9, 3, name='c'))
  y = layers.dropout(layers.flatten(layers.avg_pool2d(y)), 0.1)
  assert layers.dense(y, 9, name='d').shape[-1] == 5
  seq = keras.Input((8, 3))
  assert layers.conv1d(seq, 9, 3, name='c1').shape[-1] == 2
  again = cl.ConfigurableLayers.from_config(layers.get_config())
  assert again.parameterization == layers.parameterization
  assert again.fallback_rule == 'strict'


def test_subclassed_model_with_configurable_layers():
  class Net(keras.Model):

    def __init__(self, structure):
      super().__init__()
      self._layers_factory = cl.ConfigurableLayers(structure)

    def build_graph(self, x):
      y = self._layers_factory.conv2d(x, 8, 3, name='conv')
      return self._layers_factory.global_avg_pool2d(y)

  x = keras.Input((8, 8, 3))
  out = Net({'conv': 5}).build_graph(x)
  model = keras.Model(x, out)
  assert model(np.zeros([1, 8, 8, 3], 'float32')).shape == (1, 5)
