"""Rebuilding through Reshape layers that keep the last axis."""

import keras
import numpy as np
import pytest

from morph_net.surgery import channel_model
from morph_net.surgery import rebuild

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _squeeze_excite():
  """conv -> GAP -> Reshape((1, 1, C)) -> 1x1 convs -> Multiply (an SE block)."""
  x = keras.Input((6, 6, 3))
  y = L.Conv2D(8, 3, padding='same', name='expand')(x)
  s = L.GlobalAveragePooling2D(name='squeeze')(y)
  s = L.Reshape((1, 1, 8), name='se_reshape')(s)
  s = L.Conv2D(2, 1, activation='relu', name='se_reduce')(s)
  s = L.Conv2D(8, 1, activation='sigmoid', name='se_expand')(s)
  y = L.Multiply(name='excite')([y, s])
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


def test_reshape_keeping_the_last_axis_passes_channels_through():
  model = _squeeze_excite()
  channels = channel_model.analyze(model)
  assert channels.can_change_width('expand') == (True, '')
  assert channels.can_change_width('se_expand') == (True, '')
  assert ['expand', 'se_expand'] in channels.groups()
  kernel = model.get_layer('expand').kernel
  values = kernel.numpy()
  values[..., [1, 5]] = 0.0
  kernel.assign(values)
  model.get_layer('expand').bias.assign(np.zeros(8))
  alive = np.ones(8, bool)
  alive[[1, 5]] = False
  rebuilt = rebuild.rebuild(model, {'expand': 6, 'se_expand': 6},
                            transfer_weights=True,
                            alive_masks={'expand': alive, 'se_expand': alive})
  assert rebuilt.get_layer('se_reshape').output.shape == (None, 1, 1, 6)
  data = np.random.default_rng(0).normal(size=(2, 6, 6, 3))
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             rebuilt.predict(data, verbose=0), atol=1e-5)


def test_reshape_mixing_channels_with_positions_is_opaque():
  x = keras.Input((5,))
  y = L.Dense(32, name='project')(x)
  y = L.Reshape((4, 4, 2), name='reshape')(y)
  model = keras.Model(x, L.Conv2D(3, 1, name='conv')(y))
  channels = channel_model.analyze(model)
  assert channels.can_change_width('project') == (
      False, "it feeds layer 'reshape' (Reshape), which does not keep the "
      'last axis')
