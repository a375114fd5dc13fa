"""Custom layers round trip: alive counts -> rebuild -> StructureCost.

Issue 22: a Squeeze-Excitation block written as a custom layer (two Dense
inside, keras.ops in call) was listed by `alive_counts()` ('se2': 32), so
rebuild and StructureCost refused the structure; and `StructureCost({})`
priced the inner Dense layers at the block's width (5,608,704 against an
initial cost of 5,605,632). The structure now names only the channel
model's width-taking layers, and the inner Dense layers' own channels keep
their count on both sides of the comparison.
"""

import logging

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import expansion
from morph_net.keras import layer_regularizer
from morph_net.keras import layer_structure_cost
from morph_net.keras import regularizable
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import channel_model
from morph_net.surgery import rebuild
from morph_net.testing import custom_layers
from morph_net.testing import dead_channels
from morph_net.testing import keras_corpus
from morph_net.testing import reference_cost

L = keras.layers

_FAMILIES = {
    'gamma': (flop_regularizer.GammaFlopsRegularizer,
              {'gamma_threshold': 1e-3}, dead_channels.zero_gammas),
    'group_lasso': (flop_regularizer.GroupLassoFlopsRegularizer,
                    {'threshold': 1e-3}, dead_channels.zero_filters),
}


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


class UnknownSqueezeExcite(L.Layer):
  """An SE block as a user first writes it: no rule registered, unnamed
  inner Dense layers whose widths come from the input."""

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.squeeze = L.Dense(channels // 4, activation='relu')
    self.excite = L.Dense(channels, activation='sigmoid')
    self.squeeze.build((None, channels))
    self.excite.build((None, channels // 4))

  def call(self, x):
    gate = self.excite(self.squeeze(keras.ops.mean(x, axis=[1, 2])))
    return x * gate[:, None, None, :]


def _unknown_se_model():
  x = keras.Input((16, 16, 3))
  y = L.Conv2D(16, 3, padding='same', name='c1')(x)
  y = L.ReLU(name='r1')(L.BatchNormalization(name='bn1')(y))
  y = L.Conv2D(32, 3, padding='same', name='c2')(y)
  y = L.ReLU(name='r2')(L.BatchNormalization(name='bn2')(y))
  y = UnknownSqueezeExcite(name='se2')(y)
  y = L.Conv2D(16, 3, padding='same', name='c3')(y)
  y = L.ReLU(name='r3')(L.BatchNormalization(name='bn3')(y))
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(10, name='logits')(y))


@pytest.mark.parametrize('family', sorted(_FAMILIES))
def test_unknown_custom_layer_is_never_in_a_structure(family, caplog):
  model = _unknown_se_model()
  regularizer_class, kwargs, kill = _FAMILIES[family]
  with caplog.at_level(logging.WARNING):
    regularizer = morph_keras.ModelRegularizer(model, regularizer_class,
                                               **kwargs)
  (warning,) = [r.getMessage() for r in caplog.records
                if 'Rebuild cannot narrow' in r.getMessage()]
  assert ("1 layer(s): 'c2': it feeds layer 'se2' (UnknownSqueezeExcite), "
          'whose channel handling is unknown to rebuild.') in warning
  cost = morph_keras.StructureCost(regularizer)
  # The SE's Dense layers cost 2 * 32 * 8 FLOPs each, not 2 * 32 * 32.
  assert regularizer.initial_cost == 4941120.0
  assert cost({}) == regularizer.initial_cost
  sources = set(channel_model.analyze(model).source_layers())
  kill(model, seed=1)
  alive = regularizer.alive_counts()
  assert 'se2' not in alive and set(alive) <= sources
  assert alive['c2'] == 32  # Frozen: it feeds the unknown layer.
  assert cost(alive) == float(regularizer.cost())
  assert reference_cost.reference_flops(rebuild.rebuild(model, alive)) == (
      float(regularizer.cost()))
  # Expanding the structure back to the initial cost accepts it too.
  expanded, _, expanded_cost = expansion.expand_to_cost(
      cost, alive, regularizer.initial_cost)
  assert set(expanded) == set(alive)
  assert cost(alive) < expanded_cost <= regularizer.initial_cost
  assert cost(expanded) == expanded_cost


def test_structure_naming_a_layer_without_rule_says_so():
  model = _unknown_se_model()
  with pytest.raises(errors.StructureError) as raised:
    rebuild.rebuild(model, {'se2': 32})
  assert str(raised.value) == (
      "Structure names layer 'se2', but it is a UnknownSqueezeExcite, which "
      'has no layer rule: rebuild keeps its channels and takes no width for '
      'it (register a LayerRule with a width_attribute for a layer whose '
      'width a structure sets). Structure layers without a width of their '
      "own in the model: ['se2'].")


@pytest.mark.parametrize('family,killed_cost', [('gamma', 118888.0),
                                                ('group_lasso', 133872.0)])
def test_registered_custom_layer_narrows_and_keeps_its_bottleneck(
    family, killed_cost):
  model = keras_corpus.squeeze_excite_layer()
  regularizer_class, kwargs, kill = _FAMILIES[family]
  regularizer = morph_keras.ModelRegularizer(model, regularizer_class,
                                             **kwargs)
  cost = morph_keras.StructureCost(regularizer)
  assert regularizer.initial_cost == 322880.0
  assert cost({}) == regularizer.initial_cost
  # The SE's squeeze (16 -> 4: its output channels are its own) is not
  # regularized; its excite (4 -> 16) is regularized with conv2's group.
  squeeze, _ = _se_matmuls(regularizer.traced)
  excluded = regularizable.excluded_ops(regularizer.traced).op_names
  assert [n for n in excluded if '/se2_1/' in n] == [squeeze.name]
  data = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype('float32')
  kill(model, seed=1)
  alive = regularizer.alive_counts()
  assert 'se2' not in alive
  assert alive['conv2'] == 13
  assert float(regularizer.cost()) == killed_cost
  assert cost(alive) == killed_cost
  rebuilt = rebuild.rebuild(model, alive, transfer_weights=True)
  assert reference_cost.reference_flops(rebuilt) == killed_cost
  se = rebuilt.get_layer('se2')
  assert (tuple(se.squeeze.kernel.shape), tuple(se.excite.kernel.shape)) == (
      (13, 4), (4, 13))
  if family == 'gamma':  # Dead channels output exactly zero.
    np.testing.assert_allclose(model.predict(data, verbose=0),
                               rebuilt.predict(data, verbose=0), atol=1e-6)


def _se_matmuls(traced):
  """The SE block's squeeze and excite MatMul ops, in that order."""
  return [op for op in traced.forward_ops()
          if op.type == 'MatMul' and '/se2_1/' in op.name]


def test_inner_fixed_sides_of_a_custom_layer():
  custom_layers.register_squeeze_excite()
  model = keras_corpus.squeeze_excite_layer()
  traced = morph_keras.TracedModel(model)
  channels = channel_model.analyze(model)
  sides = [regularizable.inner_fixed_sides(channels, 'se2', op)
           for op in _se_matmuls(traced)]
  # squeeze: 16 -> 4 (its output is the bottleneck); excite: 4 -> 16.
  assert sides == [(None, 4), (4, None)]
  conv = [op for op in traced.forward_ops() if op.type == 'Conv2D'][0]
  assert regularizable.inner_fixed_sides(channels, 'conv1', conv) == (
      None, None)


def _nested_models_joined_with_a_second_input():
  """An SE custom layer, a nested Sequential and a nested residual model,
  flattened and joined with a branch of a second input (the shape of
  random case seed 1076, tests/property/test_random_models.py)."""
  custom_layers.register_squeeze_excite()
  image = keras.Input((2, 2, 3), name='image')
  vector = keras.Input((3,), name='vector')
  x = custom_layers.SqueezeExcite(ratio=1, name='se')(image)
  block = keras.Sequential([
      keras.Input((2, 2, 3)), L.Conv2D(2, 1, use_bias=False, name='conv'),
      L.BatchNormalization(name='conv_bn'), L.ReLU(name='relu')],
                           name='block')
  inner = keras.Input((2, 2, 2))
  res = L.BatchNormalization(name='res_bn')(
      L.Dense(2, use_bias=False, name='res')(inner))
  residual = keras.Model(inner, L.Add(name='add')([inner, res]),
                         name='residual')
  flat = L.Flatten(name='flat')(residual(block(x)))
  d = L.Dense(1, use_bias=False, name='d')(vector)
  e = L.Dense(2, use_bias=False, name='e')(d)
  joined = L.Concatenate(name='join')(
      [flat, keras.ops.concatenate([d, e], axis=-1)])
  return keras.Model([image, vector], L.Dense(2, name='logits')(joined))


def _zero_filters(layer, filters):
  kernel = layer.kernel.numpy()
  kernel[..., filters] = 0.0
  layer.kernel.assign(kernel)


def test_nested_residual_flattened_before_its_add_ran_keeps_one_group():
  # The traced graph runs the second input's Dense layers first: their
  # concatenation ran the Flatten before the nested model's add, and the
  # Flatten gave the add's channels a group without queueing the add, so
  # the add never joined conv's group with res's: alive_counts() gave
  # conv=1, res=0 and rebuild refused them (cost 82).
  model = _nested_models_joined_with_a_second_input()
  _zero_filters(model.get_layer('block').get_layer('conv'), [1])
  _zero_filters(model.get_layer('residual').get_layer('res'), [0, 1])
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  alive = regularizer.alive_counts()
  # Channel 0 of the group (conv, res, the add) lives in conv.
  assert alive == {'conv': 1, 'res': 1, 'd': 1, 'e': 2, 'logits': 2}
  # se: 2 x 3 x 3 twice (its channels are the image's); conv: 4 positions
  # x 2 x 3 x 1; res: 4 positions x 2 x 1 x 1; d: 2 x 3 x 1; e: 2 x 1 x 2;
  # logits: 2 x (4 x 1 + 1 + 2) x 2.
  hand = 18 + 18 + 24 + 8 + 6 + 4 + 28
  assert float(regularizer.cost()) == hand == 106
  assert morph_keras.StructureCost(regularizer)(alive) == hand
  # The layer-level engine reads the channel model's groups: the same.
  layers = layer_regularizer.LayerRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=1e-3)
  assert layers.alive_counts() == alive
  assert float(layers.cost()) == hand
  assert layer_structure_cost.LayerStructureCost(layers)(alive) == hand
  rebuilt = rebuild.rebuild(model, alive, transfer_weights=True)
  assert reference_cost.reference_flops(rebuilt) == hand
  assert rebuilt.get_layer('residual').get_layer('res').units == 1
  # The dead channel outputs 0 (fresh batch norms): outputs are equal.
  rng = np.random.default_rng(0)
  data = [rng.normal(size=(2, 2, 2, 3)).astype('float32'),
          rng.normal(size=(2, 3)).astype('float32')]
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             rebuilt.predict(data, verbose=0), atol=1e-6)


def _sep_bn_se_model(ratio, hidden):
  """A separable conv (6 filters), its batch norm and an SE custom layer
  whose bottleneck is as wide as the channels (6), then a Dense head: the
  shape of random case seed 367 (tests/property/test_random_models.py)."""
  custom_layers.register_squeeze_excite()
  image = keras.Input((8, 5, 3), name='image')
  x = L.SeparableConv2D(6, 2, depth_multiplier=2, use_bias=False,
                        name='sep')(image)
  x = L.BatchNormalization(name='bn')(x)
  x = custom_layers.SqueezeExcite(ratio=ratio, hidden=hidden, name='se')(x)
  return keras.Model(image, L.Dense(2, name='logits')(x))


@pytest.mark.parametrize('ratio,hidden', [(1, None), (4, 6)])
def test_bottleneck_as_wide_as_the_channels_keeps_its_width(ratio, hidden):
  # The graph engine told the SE's own channels from the layer's by their
  # count: with a bottleneck of 6 on 6 channels, StructureCost priced the
  # squeeze and excite matmuls at the narrowed width on both sides (4 x 4
  # twice: 3200) and the squeeze was regularized with the layer's group.
  model = _sep_bn_se_model(ratio, hidden)
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  cost = morph_keras.StructureCost(regularizer)
  assert cost({}) == regularizer.initial_cost == 1344 + 2016 + 72 + 72 + 672
  bn = model.get_layer('bn')
  gamma = bn.gamma.numpy()
  gamma[[1, 5]] = 0.0
  bn.gamma.assign(gamma)
  alive = regularizer.alive_counts()
  assert alive == {'sep': 4}
  # 7 x 4 = 28 positions. sep: depthwise 2 x 4 x 28 x 6, pointwise
  # 2 x 28 x 6 x 4; se: squeeze 2 x 4 x 6, excite 2 x 6 x 4 (the
  # bottleneck keeps its 6); logits: 2 x 28 x 4 x 2.
  hand = 1344 + 1344 + 48 + 48 + 448
  assert hand == 3232
  assert float(regularizer.cost()) == hand
  assert cost(alive) == hand
  traced = regularizer.traced
  squeeze, excite = [op for op in traced.forward_ops()
                     if op.type == 'MatMul' and '/se_1/' in op.name]
  assert [regularizable.inner_fixed_sides(cost.channels, 'se', op, traced)
          for op in (squeeze, excite)] == [(None, 6), (6, None)]
  # Without the trace, sides are told by their counts only.
  assert regularizable.inner_fixed_sides(cost.channels, 'se', squeeze) == (
      None, None)
  excluded = regularizable.excluded_ops(traced).op_names
  assert [n for n in excluded if '/se_1/' in n] == [squeeze.name]
  # The layer-level engine's rule says the bottleneck is fixed: the same.
  layers = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=1e-3)
  assert layers.alive_counts() == alive
  assert float(layers.cost()) == hand
  assert layer_structure_cost.LayerStructureCost(layers)(alive) == hand
  rebuilt = rebuild.rebuild(model, alive, transfer_weights=True)
  assert reference_cost.reference_flops(rebuilt) == hand
  se = rebuilt.get_layer('se')
  assert (tuple(se.squeeze.kernel.shape), tuple(se.excite.kernel.shape)) == (
      (4, 6), (6, 4))
  data = np.random.default_rng(0).normal(size=(2, 8, 5, 3)).astype('float32')
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             rebuilt.predict(data, verbose=0), atol=1e-6)
