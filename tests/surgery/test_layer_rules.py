"""Tests for the layer-rule registry: custom Keras layers in model surgery."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rule
from morph_net.surgery import layer_rules
from morph_net.surgery import rebuild

L = keras.layers


class ChannelScale(L.Layer):
  """Multiplies every channel by its own learned factor."""

  def build(self, input_shape):
    self.scale = self.add_weight(shape=(input_shape[-1],),
                                 initializer='ones', name='scale')

  def call(self, x):
    return x * self.scale


class PointwiseConv(L.Layer):
  """A 1x1 convolution written by hand: x @ kernel + bias on the channels."""

  def __init__(self, filters, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters

  def build(self, input_shape):
    self.kernel = self.add_weight(shape=(input_shape[-1], self.filters),
                                  initializer='glorot_uniform', name='kernel')
    self.bias = self.add_weight(shape=(self.filters,), initializer='zeros',
                                name='bias')

  def call(self, x):
    return keras.ops.matmul(x, self.kernel) + self.bias

  def get_config(self):
    config = super().get_config()
    config['filters'] = self.filters
    return config


class ScaleRule(layer_rule.LayerRule):
  """The test's own rule: channels pass through, the factors follow them."""

  def output_space(self, node):
    return node.input_spaces[0]

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del layer, new_shapes
    return [weights[0][selection.output_indices]]


class RowWeights(L.Layer):
  """Pass-through output, with a weight holding the channels on axis 0."""

  def build(self, input_shape):
    self.rows = self.add_weight(shape=(input_shape[-1], 2), initializer='ones',
                                name='rows')

  def call(self, x):
    return x * keras.ops.sum(self.rows, axis=1)


def _custom_model():
  x = keras.Input((6, 6, 3), name='image')
  y = L.Conv2D(4, 3, padding='same', name='c1')(x)
  y = ChannelScale(name='scale')(y)
  y = PointwiseConv(5, name='pw')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='custom')


def _randomize(model, seed=0):
  rng = np.random.RandomState(seed)
  for layer in model.layers:
    for weight in layer.weights:
      weight.assign(rng.normal(size=weight.shape).astype('float32'))


def _rules():
  rules = layer_rules.get_layer_rules()
  rules.register(ChannelScale, ScaleRule())
  rules.register(PointwiseConv, builtin_rules.WidthRule('filters'))
  return rules


def _numpy(variable):
  return keras.ops.convert_to_numpy(variable)


def test_custom_layers_are_rebuilt_and_weights_transferred_by_their_rules():
  model = _custom_model()
  _randomize(model)
  new = rebuild.rebuild(
      model, {'c1': 2, 'pw': 3}, transfer_weights=True,
      alive_masks={'c1': [1, 0, 1, 0], 'pw': [0, 1, 1, 0, 1]},
      layer_rules=_rules(), fold_constants=False)
  assert isinstance(new.get_layer('pw'), PointwiseConv)
  assert new.get_layer('pw').filters == 3
  old = {l.name: [_numpy(w) for w in l.weights] for l in model.layers}
  got = {l.name: [_numpy(w) for w in l.weights] for l in new.layers}
  np.testing.assert_array_equal(got['c1'][0], old['c1'][0][..., [0, 2]])
  np.testing.assert_array_equal(got['c1'][1], old['c1'][1][[0, 2]])
  np.testing.assert_array_equal(got['scale'][0], old['scale'][0][[0, 2]])
  np.testing.assert_array_equal(got['pw'][0],
                                old['pw'][0][[0, 2]][:, [1, 2, 4]])
  np.testing.assert_array_equal(got['pw'][1], old['pw'][1][[1, 2, 4]])
  np.testing.assert_array_equal(got['logits'][0], old['logits'][0][[1, 2, 4]])
  np.testing.assert_array_equal(got['logits'][1], old['logits'][1])


def test_transferred_custom_layers_compute_the_surviving_channels():
  model = _custom_model()
  _randomize(model, seed=1)
  new = rebuild.rebuild(model, {'c1': 4, 'pw': 2}, transfer_weights=True,
                        alive_masks={'pw': [0, 0, 1, 1, 0]},
                        layer_rules=_rules(), fold_constants=False)
  pw_kernel = model.get_layer('pw').kernel
  pw_bias = model.get_layer('pw').bias
  kernel, bias = _numpy(pw_kernel).copy(), _numpy(pw_bias).copy()
  kernel[:, [0, 1, 4]] = 0.0
  bias[[0, 1, 4]] = 0.0
  pw_kernel.assign(kernel)
  pw_bias.assign(bias)
  x = np.random.RandomState(2).rand(2, 6, 6, 3).astype('float32')
  np.testing.assert_allclose(model(x), new(x), rtol=1e-5, atol=1e-5)


def test_without_rules_the_custom_layers_keep_their_widths():
  model = _custom_model()
  with pytest.raises(errors.StructureError,
                     match=r"'pw', but it is a PointwiseConv, which has no "
                     'layer rule: rebuild keeps its channels and takes no '
                     'width for it'):
    rebuild.rebuild(model, {'pw': 3})
  with pytest.raises(errors.StructureError,
                     match=r"\['c1'\] cannot change.*'scale' \(ChannelScale\)"
                     '.*unknown to rebuild'):
    rebuild.rebuild(model, {'c1': 2})


def test_registering_in_a_copy_leaves_the_default_table_alone():
  rules = _rules()
  assert rules.find(ChannelScale) is not None
  assert layer_rules.get_layer_rules().find(ChannelScale) is None
  assert isinstance(layer_rules.get_layer_rules().get(ChannelScale()),
                    builtin_rules.OpaqueRule)
  assert 'PointwiseConv' in rules.width_layer_names()
  assert 'PointwiseConv' not in layer_rules.get_layer_rules(
  ).width_layer_names()


def test_register_layer_rule_changes_the_default_for_later_analyses():

  class GlobalScale(ChannelScale):
    pass

  x = keras.Input((4, 4, 3))
  y = L.Conv2D(4, 1, name='c')(x)
  y = GlobalScale(name='scale')(y)
  model = keras.Model(x, L.Conv2D(2, 1, name='out')(y))
  assert channel_model.analyze(model).frozen_reasons('c')
  layer_rules.register_layer_rule(GlobalScale, ScaleRule())
  assert not channel_model.analyze(model).frozen_reasons('c')
  assert rebuild.rebuild(model, {'c': 3}).get_layer('scale').scale.shape == (
      3,)


def test_subclasses_inherit_the_rule_of_their_registered_ancestor():

  class MyConv(L.Conv2D):
    pass

  rule = layer_rules.get_layer_rules().get(MyConv(2, 1))
  assert rule.width_attribute == 'filters'


def test_register_rejects_bad_entries():
  rules = layer_rules.get_layer_rules()
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected a Keras layer class. Received: '
                     r"layer_class='Dense' \(str\)"):
    rules.register('Dense', ScaleRule())
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'`rule` of layer class ChannelScale.*LayerRule. '
                     r'Received: rule=.*\(function\)'):
    rules.register(ChannelScale, lambda node: node)


def test_default_transfer_refuses_weights_it_cannot_slice():
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(4, 1, name='c')(x)
  y = RowWeights(name='rows')(y)
  model = keras.Model(x, L.Conv2D(2, 1, name='out')(y))
  rules = layer_rules.get_layer_rules()
  rules.register(RowWeights, builtin_rules.PassThroughRule())
  with pytest.raises(errors.WeightTransferError,
                     match=r"'rows' \(RowWeights\): a weight of shape "
                     r'\(4, 2\) does not follow its 4 channels. Register a '
                     'LayerRule for RowWeights'):
    rebuild.rebuild(model, {'c': 2}, transfer_weights=True,
                    layer_rules=rules)


class UnslicedScaleRule(ScaleRule):
  """A faulty rule: returns the factors without slicing them."""

  def transfer_weights(self, layer, weights, new_shapes, selection):
    del layer, new_shapes, selection
    return [weights[0]]


def test_weights_a_rule_slices_wrongly_are_refused():
  rules = _rules()
  rules.register(ChannelScale, UnslicedScaleRule())
  with pytest.raises(errors.WeightTransferError,
                     match=r"layer 'scale' \(ChannelScale\): computed shape "
                     r'\(4,\), rebuilt layer has \(2,\)'):
    rebuild.rebuild(_custom_model(), {'c1': 2}, transfer_weights=True,
                    layer_rules=rules)
