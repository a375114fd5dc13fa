"""The cost hook of layer rules (`LayerRule.costed_ops`) and rules by name."""

import keras
import pytest

from morph_net import errors
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model
from morph_net.surgery import layer_cost
from morph_net.surgery import layer_rules

L = keras.layers


def _costed(model):
  """{layer name: [(op name, flops, weights, depthwise)]} of every call."""
  channels = channel_model.analyze(model)
  result = {}
  for layer, inputs, outputs in channels.nodes:
    call = layer_cost.LayerCall(
        layer, inputs, outputs, [channels.space[id(t)] for t in inputs],
        channels.space[id(outputs[0])])
    ops = channels.rule(layer).costed_ops(call)
    result[layer.name] = (None if ops is None else
                          [(o.name, o.flops, o.weights, o.depthwise)
                           for o in ops])
  return result


def test_conv_kinds_by_hand():
  x = keras.Input((6, 6, 4))
  a = L.Conv2D(8, 3, padding='same', groups=2, name='grouped')(x)
  b = L.Conv2D(4, 3, padding='same', groups=4, name='channelwise')(x)
  c = L.Conv2DTranspose(3, 2, strides=2, name='transposed')(x)
  d = L.SeparableConv2D(5, 3, depth_multiplier=2, name='separable')(x)
  e = L.DepthwiseConv2D(3, strides=2, padding='same', name='depthwise')(x)
  f = L.Dense(7, name='dense')(L.Reshape((36, 4), name='tokens')(x))
  model = keras.Model(x, [a, b, c, d, e, f])
  costed = _costed(model)
  assert costed['grouped'] == [('kernel', 2.0 * 36 * 9 / 2, 4.5, False)]
  assert costed['channelwise'] == [('kernel', 2.0 * 36 * 9, 9.0, True)]
  # A transposed conv: 2 x input positions x kernel size.
  assert costed['transposed'] == [('kernel', 2.0 * 36 * 4, 4.0, False)]
  # Valid 3x3 on 6x6: 16 output positions.
  assert costed['separable'] == [('depthwise', 2.0 * 16 * 9, 9.0, True),
                                 ('pointwise', 2.0 * 16, 1.0, False)]
  assert costed['depthwise'] == [('depthwise', 2.0 * 9 * 9, 9.0, True)]
  assert costed['dense'] == [('kernel', 2.0 * 36, 1.0, False)]
  assert costed['tokens'] == []


def test_separable_middle_space_repeats_the_input():
  x = keras.Input((5, 5, 3))
  y = L.SeparableConv2D(4, 3, depth_multiplier=2, name='separable')(x)
  channels = channel_model.analyze(keras.Model(x, y))
  layer = channels.layers['separable']
  call = layer_cost.LayerCall(layer, [x], [y], [channels.space[id(x)]],
                              channels.space[id(y)])
  depthwise, pointwise = channels.rule(layer).costed_ops(call)
  assert depthwise.output_space == pointwise.input_space
  assert channels.space_size(depthwise.output_space) == 6


class _Custom(keras.layers.Layer):
  """A custom layer with a kernel: it multiplies channels."""

  def build(self, input_shape):
    self.kernel = self.add_weight(shape=(input_shape[-1], 3))

  def call(self, x):
    return keras.ops.matmul(x, self.kernel)


def test_holds_arithmetic():
  x = keras.Input((4,))
  custom = _Custom(name='custom')
  custom(x)
  assert layer_cost.holds_arithmetic(custom)
  assert layer_cost.holds_arithmetic(L.LSTM(2))
  assert not layer_cost.holds_arithmetic(L.BatchNormalization())
  assert not layer_cost.holds_arithmetic(L.ReLU())


def test_pass_through_rule_of_a_layer_with_a_kernel_is_unknown():
  rules = layer_rules.get_layer_rules()
  rules.register(_Custom, builtin_rules.PassThroughRule())
  x = keras.Input((4,))
  custom = _Custom(name='custom')
  y = custom(x)
  call = layer_cost.LayerCall(custom, [x], [y], [], None)
  assert rules.get(custom).costed_ops(call) is None


def test_positions_must_be_static():
  x = keras.Input((None, None, 3))
  conv = L.Conv2D(2, 3, name='conv')
  y = conv(x)
  with pytest.raises(errors.UnsupportedModelError) as e:
    layer_cost.positions(y, conv)
  assert str(e.value) == (
      "Layer 'conv' (Conv2D) runs on a tensor of shape (None, None, None, 2) "
      'whose positions are not static, so its cost cannot be computed from '
      'its config. Build the model with a fixed input size '
      '(keras.Input(shape=...)).')


class _Named(keras.layers.Layer):

  def call(self, x):
    return x


class _NamedChild(_Named):
  pass


def test_a_rule_registered_by_name_is_found_along_the_hierarchy():
  rules = layer_rules.get_layer_rules()
  rule = builtin_rules.PassThroughRule()
  rules.register_by_name(builtin_rules.qualified_name(_Named), rule)
  assert rules.find(_NamedChild) is rule
  by_class = builtin_rules.OpaqueRule()
  rules.register(_NamedChild, by_class)
  assert rules.find(_NamedChild) is by_class
  assert rules.copy().find(_Named) is rule
  assert layer_rules.get_layer_rules().find(_Named) is None


def test_register_by_name_checks_its_arguments():
  rules = layer_rules.get_layer_rules()
  with pytest.raises(errors.InvalidArgumentError) as e:
    rules.register_by_name('NoModule', builtin_rules.PassThroughRule())
  assert str(e.value) == (
      "Invalid value for argument `qualified_name`. Expected "
      "'module.ClassName' of a Keras layer class. Received: "
      "qualified_name='NoModule'")
  with pytest.raises(errors.InvalidArgumentError) as e:
    rules.register_by_name('a.B', 'rule')
  assert str(e.value) == (
      'Invalid value for argument `rule` of layer class a.B. Expected an '
      'instance of morph_net.surgery.layer_rule.LayerRule. Received: '
      "rule='rule' (str)")


def test_the_gating_layer_has_its_rule_by_name():
  assert builtin_rules.named_rule_table().keys() == {
      'morph_net.probabilistic_gating.activation_gating.'
      'LogisticSigmoidGating'}
  if keras.backend.backend() != 'tensorflow':
    pytest.skip('the gating layer needs TensorFlow')
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  rule = layer_rules.get_layer_rules().find(
      activation_gating.LogisticSigmoidGating)
  assert type(rule) is builtin_rules.PassThroughRule  # pylint: disable=unidiomatic-typecheck
  assert activation_gating.LogisticSigmoidGating in (
      builtin_rules.builtin_rule_table())
