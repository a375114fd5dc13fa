"""Constant folding: a rebuilt model computes what the regularized one did."""

import logging
import re

import keras
import numpy as np
import pytest

from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm

L = keras.layers

# Dead channels of each channel group, by the batch norms (gamma 0) or, for
# `fc`, which has no batch norm, by its kernel columns (0; the bias stays).
_DEAD_BY_BN = {'c1_bn': [1, 4], 'c2_bn': [0, 3], 'b2_bn': [0, 3],
               'b1_bn': [0, 1, 2, 3], 't_bn': [2], 'c3_bn': [0, 5]}
_DEAD_FC = [1]
# The alive counts: b1 vanishes (all its channels are dead), so does b2
# (its input vanished) and the Add passes its skip.
_STRUCTURE = {'c1': 6, 'c2': 4, 'b1': 0, 'b2': 4, 't': 4, 'c3': 5, 'fc': 4}


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _model(padding='valid'):
  """Constants of dead channels reach a depthwise conv, a 1x1 conv with a
  bias, an Add whose branch vanishes, a Concatenate, a 3x3 conv followed by
  a batch norm (no bias), and two Dense layers."""
  x = keras.Input((12, 12, 3), name='image')
  y = L.Conv2D(8, 3, use_bias=False, name='c1')(x)
  y = L.BatchNormalization(name='c1_bn')(y)
  y = L.ReLU(name='c1_relu')(y)
  y = L.DepthwiseConv2D(3, name='dw')(y)
  y = L.ReLU(name='dw_relu')(y)
  y = L.Conv2D(6, 1, name='c2')(y)
  skip = L.BatchNormalization(name='c2_bn')(y)
  b = L.Conv2D(4, 1, use_bias=False, name='b1')(skip)
  b = L.BatchNormalization(name='b1_bn')(b)
  b = L.ReLU(name='b1_relu')(b)
  b = L.Conv2D(6, 1, use_bias=False, name='b2')(b)
  b = L.BatchNormalization(name='b2_bn')(b)
  y = L.Add(name='add')([skip, b])
  t = L.Conv2D(5, 1, use_bias=False, name='t')(y)
  t = L.BatchNormalization(name='t_bn')(t)
  t = L.ReLU(name='t_relu')(t)
  y = L.Concatenate(name='cat')([y, t])
  y = L.Conv2D(7, 3, padding=padding, use_bias=False, name='c3')(y)
  y = L.BatchNormalization(name='c3_bn')(y)
  y = L.ReLU(name='c3_relu')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  y = L.Dense(5, activation='relu', name='fc')(y)
  out = L.Dense(3, name='logits')(y)
  model = keras.Model(x, out, name='folding')
  rng = np.random.RandomState(1)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      c = layer.gamma.shape[0]
      gamma = rng.uniform(0.5, 1.5, c)
      gamma[_DEAD_BY_BN[layer.name]] = 0.0
      # Betas of dead channels are far from 0, as after training.
      layer.set_weights([gamma, rng.uniform(0.2, 0.6, c),
                         rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    elif layer.weights:
      layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.weights])
  kernel = model.get_layer('fc').kernel.numpy()
  kernel[:, _DEAD_FC] = 0.0
  model.get_layer('fc').kernel.assign(kernel)
  return model


def _data():
  return np.random.RandomState(2).normal(size=(4, 12, 12, 3))


def _predict(model, layer=None):
  if layer is not None:
    model = keras.Model(model.input, model.get_layer(layer).output)
  return keras.ops.convert_to_numpy(model(_data(), training=False))


def test_folding_reproduces_the_regularized_outputs():
  model = _model()
  before = [w.numpy().copy() for w in model.weights]
  small = rebuild.rebuild(model, _STRUCTURE, transfer_weights=True)
  assert 'b1' not in [l.name for l in small.layers]
  assert small.get_layer('c3').kernel.shape == (3, 3, 8, 5)
  np.testing.assert_allclose(_predict(small), _predict(model), rtol=1e-5,
                             atol=1e-5)
  # Folded: the bias of c2 (after dw), the moving mean of c3_bn (c3 has no
  # bias), the bias of logits (after fc's dead channel).
  np.testing.assert_allclose(
      _predict(small, 'c3_relu'),
      _predict(model, 'c3_relu')[..., [1, 2, 3, 4, 6]], rtol=1e-5, atol=1e-5)
  # The user's model is only read.
  for old, variable in zip(before, model.weights):
    np.testing.assert_array_equal(variable.numpy(), old)


def test_without_folding_the_outputs_differ():
  model = _model()
  small = rebuild.rebuild(model, _STRUCTURE, transfer_weights=True,
                          fold_constants=False)
  difference = np.max(np.abs(_predict(small) - _predict(model)))
  assert difference > 0.1


def test_same_padding_is_exact_in_the_interior_and_logged(caplog):
  model = _model(padding='same')
  with caplog.at_level(logging.INFO):
    small = rebuild.rebuild(model, _STRUCTURE, transfer_weights=True)
  # c3 sees its constants zero-padded at the borders; the border difference
  # reaches fc and logits through the global average pooling.
  assert ("not exact for 3 layers (zero padding at the borders of 'same' "
          'convolutions' in caplog.text)
  assert re.search(r"Largest deviations: 'c3' \(Conv2D\) 3.1, 'fc' "
                   r"\(Dense\) 0.155, 'logits' \(Dense\) 0.0293",
                   caplog.text)
  new = _predict(small, 'c3_relu')
  old = _predict(model, 'c3_relu')[..., [1, 2, 3, 4, 6]]
  np.testing.assert_allclose(new[:, 1:-1, 1:-1], old[:, 1:-1, 1:-1],
                             rtol=1e-5, atol=1e-5)
  assert np.max(np.abs(new[:, 0] - old[:, 0])) > 1e-3


def test_a_layer_without_bias_or_batch_norm_is_named(caplog):
  x = keras.Input((6,), name='x')
  y = L.Dense(4, name='d1')(x)
  y = L.BatchNormalization(name='d1_bn')(y)
  y = L.Dense(3, use_bias=False, name='d2')(y)
  model = keras.Model(x, L.Dense(2, name='out')(y))
  bn = model.get_layer('d1_bn')
  bn.set_weights([np.array([1, 0, 1, 1.]), np.array([0, 0.5, 0, 0.]),
                  np.zeros(4), np.ones(4)])
  with caplog.at_level(logging.WARNING):
    rebuild.rebuild(model, {'d1': 3}, transfer_weights=True)
  assert ("Cannot fold the constant output of removed channels into layer "
          "'d2' (Dense) of 'functional': it has no bias and no "
          'BatchNormalization alone after it.') in caplog.text


def test_a_layer_mixing_channels_is_named(caplog):
  x = keras.Input((6,), name='x')
  y = L.Dense(4, name='d1')(x)
  y = L.BatchNormalization(name='d1_bn')(y)
  y = L.LayerNormalization(name='ln')(y)
  model = keras.Model(x, L.Dense(2, name='out')(y))
  model.get_layer('d1_bn').set_weights(
      [np.array([1, 0, 1, 1.]), np.array([0, 0.5, 0, 0.]), np.zeros(4),
       np.ones(4)])
  with caplog.at_level(logging.WARNING):
    rebuild.rebuild(model, {'d1': 3}, transfer_weights=True)
  assert ("Cannot fold the constant output of removed channels into layer "
          "'ln' (LayerNormalization) of 'functional': it mixes channels in "
          'a way that is not affine') in caplog.text


def test_a_batch_norm_after_a_dead_filter_folds_its_normalized_constant():
  # Found by tests/property/test_random_models.py: under GroupLasso a
  # filter dies by its kernel, and the live batch norm after it outputs
  # beta - gamma * mean / sqrt(variance + epsilon) on that channel; the
  # probe zeroed the batch norm's gamma, so beta alone was folded.
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  x = keras.Input((2, 2, 3))
  y = L.Dense(2, use_bias=False, name='d')(x)
  y = L.BatchNormalization(epsilon=0.001, name='bn')(y)
  model = keras.Model(x, L.Dense(1, name='logits')(y))
  d = model.get_layer('d')
  d.kernel.assign(np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]],
                           'float32'))  # Filter 0 is dead.
  bn = model.get_layer('bn')
  for variable, value in ((bn.gamma, [2.0, 1.0]), (bn.beta, [0.5, 0.0]),
                          (bn.moving_mean, [1.0, 0.0]),
                          (bn.moving_variance, [0.999, 0.999])):
    variable.assign(np.array(value, 'float32'))
  model.get_layer('logits').kernel.assign(np.array([[3.0], [1.0]],
                                                   'float32'))
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  assert regularizer.alive_counts() == {'d': 1, 'logits': 1}
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  # Channel 0 outputs 0.5 - 2 * 1 / sqrt(0.999 + 0.001) = -1.5, times 3.
  np.testing.assert_allclose(rebuilt.get_layer('logits').bias.numpy(),
                             [-4.5], rtol=1e-6)
  data = np.random.default_rng(0).normal(size=(2, 2, 2, 3))
  np.testing.assert_allclose(rebuilt(data), model(data), rtol=1e-5,
                             atol=1e-5)


def test_token_ids_stay_below_a_nested_embeddings_vocabulary():
  # The probe's random token ids are drawn below the smallest vocabulary;
  # an Embedding inside a nested model counts (ids of 5 or more would be
  # out of its range).
  from morph_net.surgery import folding  # pylint: disable=g-import-not-at-top
  tokens = keras.Input((3,), dtype='int32')
  inner = keras.Model(tokens, L.Embedding(5, 2, name='small')(tokens),
                      name='inner')
  x = keras.Input((3,), dtype='int32')
  y = L.Concatenate()([L.Embedding(100, 2, name='big')(x), inner(x)])
  model = keras.Model(x, y)
  assert folding._token_bound(model) == 5  # pylint: disable=protected-access
  assert folding._token_bound(inner) == 5  # pylint: disable=protected-access
  assert folding._token_bound(keras.Model(x, L.Embedding(100, 2)(x))) == 100  # pylint: disable=protected-access
