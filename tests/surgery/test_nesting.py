"""Rebuilding models that nest functional and Sequential models."""

import logging

import keras
import numpy as np
import pytest

from morph_net.surgery import channel_model
from morph_net.surgery import nesting
from morph_net.surgery import rebuild
from morph_net.testing import keras_corpus

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _kill(model, bn_name, dead):
  bn = [l for l in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
        if l.name == bn_name][0]
  for variable in (bn.gamma, bn.beta):
    values = variable.numpy()
    values[dead] = 0.0
    variable.assign(values)


def test_flat_view_has_the_inner_layers():
  model = keras_corpus.get('nested_functional').build()
  assert nesting.has_nested_models(model)
  flat = nesting.flatten_nested(model)
  assert not nesting.has_nested_models(flat)
  names = [l.name for l in flat.layers]
  assert 'base' not in names
  assert {'base_c1', 'base_c2', 'head_conv', 'logits'} <= set(names)
  assert flat.get_layer('base_c1') is model.get_layer('base').get_layer(
      'base_c1')
  data = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             flat.predict(data, verbose=0), atol=1e-6)


@pytest.mark.parametrize('name,structure,dead', [
    ('nested_functional', {'base_c1': 5, 'base_c2': 9, 'head_conv': 10},
     {'base_c1_bn': [0, 2, 7], 'base_c2_bn': [1, 4, 5]}),
    ('sequential_head', {'c1': 8, 'c2': 10, 'head_fc': 7},
     {'head_fc_bn': [0, 3, 4, 8, 11]}),
])
def test_nested_layers_are_narrowed_with_weights(name, structure, dead):
  model = keras_corpus.get(name).build()
  for bn_name, indices in dead.items():
    _kill(model, bn_name, indices)
  channels = channel_model.analyze(model)
  for layer in structure:
    assert channels.can_change_width(layer) == (True, '')
  rebuilt = rebuild.rebuild(model, structure, transfer_weights=True)
  # The nesting is kept: the same top-level layers, nested models included.
  assert [l.name for l in rebuilt.layers] == [l.name for l in model.layers]
  assert [type(l) for l in rebuilt.layers] == [type(l) for l in model.layers]
  leaves = {l.name: l for l in nesting.leaf_layers(rebuilt)}
  for layer, width in structure.items():
    assert leaves[layer].kernel.shape[-1] == width
  data = np.random.default_rng(1).normal(size=(2, 8, 8, 3))
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             rebuilt.predict(data, verbose=0), atol=1e-5)


class _AliveSource(object):
  """Alive counts and vectors, as a ModelRegularizer gives them."""

  def __init__(self, vectors):
    self._vectors = vectors

  def alive_vectors(self):
    return dict(self._vectors)

  def alive_counts(self):
    return {k: int(np.sum(v)) for k, v in self._vectors.items()}


def _mobilenet_under_a_head(sequential):
  base = keras.applications.MobileNetV2(
      alpha=0.35, input_shape=(32, 32, 3), include_top=False, weights=None)
  if sequential:
    return base, keras.Sequential(
        [keras.Input((32, 32, 3), name='image'), base,
         L.GlobalAveragePooling2D(name='gap'), L.Dense(10, name='head')],
        name='classifier')
  x = keras.Input((32, 32, 3), name='image')
  y = L.GlobalAveragePooling2D(name='gap')(base(x))
  return base, keras.Model(x, L.Dense(10, name='head')(y), name='classifier')


def _kill_some_channels(model):
  """Random BN statistics; every third changeable group loses 3 channels
  (gamma 0 in each batch norm of the group, betas stay). Returns the alive
  vectors of the width-taking layers."""
  rng = np.random.RandomState(0)
  for layer in nesting.leaf_layers(model):
    if isinstance(layer, L.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c),
                         rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
  channels = channel_model.analyze(model)
  dead = {}
  for group in channels.groups()[::3]:
    if channels.can_change_width(group[0])[0]:
      gid = channels.group_of(group[0])
      dead[gid] = rng.choice(channels.group_size(gid), 3, replace=False)
  for name, layer in channels.layers.items():
    space = (channels.layer_in.get(name) or [None])[0]
    if (isinstance(layer, L.BatchNormalization) and
        getattr(space, 'gid', None) is not None and
        channels.find(space.gid) in dead):
      gamma = layer.gamma.numpy()
      gamma[dead[channels.find(space.gid)]] = 0.0
      layer.gamma.assign(gamma)
  vectors = {}
  for name in channels.source_layers():
    vector = np.ones(channels.original_width(name), bool)
    vector[dead.get(channels.group_of(name), [])] = False
    vectors[name] = vector
  return vectors, len(dead)


@pytest.mark.parametrize('sequential', [False, True])
def test_a_nested_base_stays_nested(sequential):
  base, model = _mobilenet_under_a_head(sequential)
  vectors, groups = _kill_some_channels(model)
  assert groups == 9
  data = np.random.default_rng(3).normal(size=(2, 32, 32, 3))
  expected = keras.ops.convert_to_numpy(model(data, training=False))
  # The identity structure: the same model, bit for bit.
  same = rebuild.rebuild(model, {}, transfer_weights=True)
  np.testing.assert_array_equal(
      keras.ops.convert_to_numpy(same(data, training=False)), expected)
  small = rebuild.rebuild(model, _AliveSource(vectors), transfer_weights=True)
  assert type(small) is type(model)
  assert [l.name for l in small.layers] == [l.name for l in model.layers]
  new_base = small.get_layer(base.name)
  assert isinstance(new_base, keras.Model) and new_base is not base
  assert len(new_base.layers) == len(base.layers)
  assert small.count_params() < model.count_params()
  np.testing.assert_allclose(
      keras.ops.convert_to_numpy(small(data, training=False)), expected,
      rtol=1e-4, atol=1e-4)
  # Fine-tuning the head only works as on the original.
  new_base.trainable = False
  assert [w.path for w in small.trainable_weights] == [
      'head/kernel', 'head/bias']


def test_a_nested_model_losing_one_output_is_rebuilt_flat(caplog):
  inner_in = keras.Input((6, 6, 3), name='inner_in')
  a = L.Conv2D(4, 1, name='conv_a')(inner_in)
  b = L.Conv2D(3, 1, name='conv_b')(inner_in)
  inner = keras.Model(inner_in, [a, b], name='towers')
  x = keras.Input((6, 6, 3), name='image')
  ya, yb = inner(x)
  y = L.Concatenate(name='cat')([ya, yb])
  y = L.GlobalAveragePooling2D(name='gap')(y)
  model = keras.Model(x, L.Dense(2, name='head')(y), name='outer')
  model.get_layer('towers').get_layer('conv_b').set_weights(
      [np.zeros((1, 1, 3, 3)), np.zeros(3)])
  with caplog.at_level(logging.WARNING):
    small = rebuild.rebuild(model, {'conv_b': 0}, transfer_weights=True)
  assert ("Rebuilding model 'outer' flat (its nested models become layers "
          "of one functional model): some outputs of nested model 'towers' "
          'vanish.') in caplog.text
  # Flat; the concat of one live input is that input.
  assert [l.name for l in small.layers] == ['image', 'conv_a', 'gap', 'head']
  data = np.random.default_rng(0).normal(size=(2, 6, 6, 3))
  np.testing.assert_allclose(small.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-6)
