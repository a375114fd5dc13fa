"""Rebuilding models that nest functional and Sequential models."""

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
