"""Rebuilding through recurrent layers (surgery's RecurrentRule)."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import builtin_rules
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rule
from morph_net.surgery import rebuild

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _model(wrap):
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  y = wrap(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


@pytest.mark.parametrize('wrap,kernel_shape', [
    (L.SimpleRNN(4, name='rnn'), (5, 4)),
    (L.GRU(4, name='rnn'), (5, 12)),
    (L.Bidirectional(L.LSTM(3), name='rnn'), (5, 12)),
])
def test_recurrent_inputs_follow_the_upstream_group(wrap, kernel_shape):
  model = _model(wrap)
  channels = channel_model.analyze(model)
  assert channels.can_change_width('embed') == (True, '')
  assert channels.frozen_reasons('logits') == []
  kernel = model.get_layer('embed').kernel
  values = kernel.numpy()
  values[:, [1, 4, 6]] = 0.0
  kernel.assign(values)
  model.get_layer('embed').bias.assign(np.zeros(8))
  rebuilt = rebuild.rebuild(model, {'embed': 5}, transfer_weights=True)
  kernels = [w for w in rebuilt.get_layer('rnn').weights
             if w.path.endswith('/kernel')]
  assert {tuple(k.shape) for k in kernels} == {kernel_shape}
  data = np.random.default_rng(0).normal(size=(2, 5, 3)).astype('float32')
  np.testing.assert_allclose(model.predict(data, verbose=0),
                             rebuilt.predict(data, verbose=0), atol=1e-5)


def test_recurrent_units_are_the_layers_own_group():
  model = _model(L.LSTM(4, return_sequences=True, name='rnn'))
  channels = channel_model.analyze(model)
  assert channels.can_change_width('rnn') == (True, '')
  assert channels.original_width('rnn') == 4
  assert builtin_rules.RecurrentRule.width_attribute == 'units'


def test_bidirectional_concatenation_holds_its_units_twice():
  model = _model(L.Bidirectional(L.GRU(3), name='rnn'))
  channels = channel_model.analyze(model)
  assert channels.original_width('rnn') == 3
  space = channels.output_space('rnn')
  assert space.size(channels.table) == 6
  assert space.indices(channels.table, lambda root: np.array([0, 2])
                       ).tolist() == [0, 2, 3, 5]


def test_recurrent_layer_of_another_cell_keeps_its_units():
  model = _model(L.Bidirectional(L.RNN(L.LSTMCell(3)), name='rnn'))
  channels = channel_model.analyze(model)
  reasons = channels.table.frozen_reasons(
      channels.output_space('rnn').group_ids(channels.table)[0])
  assert reasons == ["it is the output of recurrent layer 'rnn' "
                     '(Bidirectional), whose units keep their width '
                     '(rebuild narrows the units of SimpleRNN, GRU and LSTM '
                     'layers, and of Bidirectional wrappers of them with one '
                     'width)']


def test_recurrent_weight_that_does_not_follow_raises():
  layer = L.LSTM(2, name='rnn')
  layer.build((None, 4, 3))
  weights = [w.numpy() for w in layer.weights]
  selection = layer_rule.ChannelSelection(np.arange(2), np.arange(2), 2)
  shapes = [(2, 8), (3, 8), (8,)]  # A recurrent kernel that shrank.
  with pytest.raises(errors.WeightTransferError,
                     match=r"weight 'rnn/lstm_cell/recurrent_kernel' of "
                     r"recurrent layer 'rnn' \(LSTM\): shape \(2, 8\), "
                     r'rebuilt \(3, 8\)'):
    builtin_rules.RecurrentRule().transfer_weights(layer, weights, shapes,
                                                   selection)


def test_recurrent_activation_not_zero_at_zero_keeps_the_units():
  model = _model(L.SimpleRNN(3, activation='sigmoid', name='rnn'))
  channels = channel_model.analyze(model)
  assert 'rnn' not in channels.source_layers()
  reasons = channels.table.frozen_reasons(
      channels.output_space('rnn').group_ids(channels.table)[0])
  assert reasons == [
      "it is the output of recurrent layer 'rnn' (SimpleRNN), whose units "
      'keep their width (its activation is not 0 at 0, so a unit with zero '
      'weights does not output 0)']
