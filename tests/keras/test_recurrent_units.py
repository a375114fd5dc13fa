"""Pruning the units of recurrent layers (SimpleRNN, GRU, LSTM, Bidirectional).

A unit made dead has every gate's kernel column, its recurrent-kernel
columns and row and its biases zeroed. The costs are counted by hand:
FLOPs = sum over directions of 2 x steps x gates x units x (in + units),
weights = gates x units x (in + units) per direction, and 2 x in x out
(FLOPs per position) or in x out (weights) for a Dense.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net.keras import expansion
from morph_net.keras import model_regularizer
from morph_net.keras import recurrent
from morph_net.keras import structure_cost
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.op_handlers import slice_op_handler
from morph_net.surgery import builtin_rules
from morph_net.surgery import rebuild

L = keras.layers
DATA = np.random.default_rng(0).normal(size=(3, 5, 3)).astype('float32')


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  keras.utils.set_random_seed(1)
  yield


def _kill_units(layer, dead):
  """Zeroes every weight of units `dead` in each direction of `layer`."""
  directions = builtin_rules.recurrent_directions(layer)
  for rnn in directions:
    units = rnn.units
    for variable in rnn.weights:
      values = variable.numpy()
      gates = values.shape[-1] // units
      values[..., [g * units + d for g in range(gates) for d in dead]] = 0.0
      if variable.path.endswith('recurrent_kernel'):
        values[dead, :] = 0.0
      variable.assign(values)


def _stacked():
  """embed 8 -> LSTM 4 (sequences) -> Bidirectional GRU 3 -> logits 2."""
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  y = L.LSTM(4, return_sequences=True, name='lstm')(y)
  y = L.Bidirectional(L.GRU(3), name='bigru')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('lstm'), [1])
  _kill_units(model.get_layer('bigru'), [0, 2])
  return model


def _group_lasso(model, regularizer_class=None, **kwargs):
  return model_regularizer.ModelRegularizer(
      model, regularizer_class or flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=1e-3, **kwargs)


# embed 2*5*3*8; lstm 2*5*4*3*(8+3); bigru 2 x 2*5*3*1*(3+1); logits 2*2*2.
STACKED_FLOPS = 240 + 1320 + 2 * 120 + 8
# embed 3*8; lstm 4*3*(8+3); bigru 2 x 3*1*(3+1); logits 2*2.
STACKED_WEIGHTS = 24 + 132 + 2 * 12 + 4


def test_alive_units_and_flops_by_hand():
  regularizer = _group_lasso(_stacked())
  assert regularizer.alive_counts() == {'embed': 8, 'lstm': 3, 'bigru': 1,
                                        'logits': 2}
  assert float(regularizer.cost()) == STACKED_FLOPS
  vectors = regularizer.alive_vectors()
  assert vectors['lstm'].tolist() == [True, False, True, True]
  assert vectors['bigru'].tolist() == [False, True, False]


def test_model_size_by_hand():
  regularizer = _group_lasso(
      _stacked(), model_size_regularizer.GroupLassoModelSizeRegularizer)
  assert float(regularizer.cost()) == STACKED_WEIGHTS


def test_all_units_alive_keep_todays_cost():
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  y = L.LSTM(4, return_sequences=True, name='lstm')(y)
  y = L.Bidirectional(L.GRU(3), name='bigru')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  regularizer = _group_lasso(model)
  # lstm 2*5*4*4*(8+4); bigru 2 x 2*5*3*3*(4+3); logits 2*6*2.
  assert float(regularizer.cost()) == 240 + 1920 + 2 * 630 + 24
  assert regularizer.alive_counts()['bigru'] == 3


def test_unit_regularization_is_the_group_lasso_of_its_weights():
  model = _stacked()
  regularizer = _group_lasso(model)
  values = regularizer.regularization_vectors()
  for name, dead in (('lstm', [1]), ('bigru', [0, 2])):
    scores = builtin_rules.RecurrentRule().channel_scores(
        model.get_layer(name))
    np.testing.assert_allclose(values[name], scores, rtol=1e-5)
    assert values[name][dead].tolist() == [0.0] * len(dead)
  # LSTM: per unit 4 gates x (8 kernel + 4 recurrent + 1 bias) entries and
  # its recurrent row without those 4: 64 weights; the root mean square.
  lstm = model.get_layer('lstm')
  kernel, recurrent_kernel, bias = [w.numpy() for w in lstm.weights]
  columns = [g * 4 + 2 for g in range(4)]
  row = np.delete(recurrent_kernel[2], columns)
  unit = np.concatenate([kernel[:, columns].ravel(),
                         recurrent_kernel[:, columns].ravel(), row,
                         bias[columns]])
  assert unit.size == 64
  np.testing.assert_allclose(values['lstm'][2],
                             np.sqrt(np.mean(unit ** 2)), rtol=1e-5)


def test_term_is_the_bilinear_form_of_the_recurrent_cost():
  regularizer = _group_lasso(_stacked())
  values = regularizer.regularization_vectors()
  embed, lstm, bigru = (float(values[n].sum())
                        for n in ('embed', 'lstm', 'bigru'))
  # embed: 2*5 x (3 inputs x sum(r_embed)); logits (kept, r 0): 2 x (2
  # outputs x sum(r_in)), its input holding bigru's units twice.
  network = 2 * 5 * 3 * embed + 2 * 2 * (2 * bigru)
  # lstm: C=2*5*4, in 8, U 3; bigru: C=2*5*3 per direction, in 3 (lstm's
  # units), U 1: C x (U x sum(r_in) + in x sum(r_U) + 2 U x sum(r_U)).
  recurrent_part = (40 * (3 * embed + 8 * lstm + 6 * lstm) +
                    2 * 30 * (1 * lstm + 3 * bigru + 2 * bigru))
  assert float(regularizer.term()) == pytest.approx(network + recurrent_part,
                                                    rel=1e-5)


def test_structure_cost_and_rebuild_agree():
  model = _stacked()
  regularizer = _group_lasso(model)
  cost = structure_cost.StructureCost(regularizer)
  assert cost(regularizer.alive_counts()) == STACKED_FLOPS
  assert cost({}) == 240 + 1920 + 2 * 630 + 24
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('lstm').units == 3
  assert rebuilt.get_layer('bigru').forward_layer.units == 1
  assert rebuilt.get_layer('bigru').backward_layer.units == 1
  shapes = [tuple(w.shape) for w in rebuilt.get_layer('bigru').weights]
  assert shapes == [(3, 3), (1, 3), (2, 3)] * 2
  np.testing.assert_allclose(rebuilt.predict(DATA, verbose=0),
                             model.predict(DATA, verbose=0), atol=1e-5)
  fresh = _group_lasso(rebuilt)
  assert float(fresh.cost()) == STACKED_FLOPS
  assert fresh.alive_counts() == regularizer.alive_counts()


def test_expand_to_cost_widens_the_units():
  regularizer = _group_lasso(_stacked())
  cost = structure_cost.StructureCost(regularizer)
  expanded, _, flops = expansion.expand_to_cost(
      cost, regularizer.alive_counts(), cost({}))
  assert flops == cost(expanded)
  assert abs(flops - cost({})) <= 0.01 * cost({})
  # The units are scaled with the other groups (never below the shrunk).
  assert expanded['lstm'] > 3 and expanded['bigru'] >= 1
  assert expanded['embed'] > 8


@pytest.mark.parametrize('layer,gates', [
    (L.SimpleRNN(4, name='rnn'), 1),
    (L.GRU(4, name='rnn'), 3),
    (L.GRU(4, reset_after=False, name='rnn'), 3),
    (L.LSTM(4, name='rnn'), 4),
    (L.Bidirectional(L.LSTM(4), merge_mode='sum', name='rnn'), 8),
])
def test_each_cell_rebuilds_with_the_same_outputs(layer, gates):
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  y = L.ReLU(name='relu')(layer(y))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('rnn'), [0, 3])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts()['rnn'] == 2
  # gates counts both directions of the Bidirectional layer; the logits
  # read the 2 alive units through the ReLU.
  flops = 240 + 2 * 5 * gates * 2 * (8 + 2) + 2 * 2 * 2
  assert float(regularizer.cost()) == flops
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  np.testing.assert_allclose(rebuilt.predict(DATA, verbose=0),
                             model.predict(DATA, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == flops


def test_conv1d_reads_the_alive_units():
  x = keras.Input((6,), dtype='int32')
  y = L.Embedding(20, 5, name='embedding')(x)
  y = L.Conv1D(4, 3, padding='same', name='conv')(y)
  y = L.LSTM(3, return_sequences=True, name='lstm')(y)
  y = L.Conv1D(2, 3, name='conv2')(y)
  y = L.GlobalMaxPooling1D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('lstm'), [1])
  regularizer = _group_lasso(model)
  # The embedding's output width is a group of its own (all alive).
  assert regularizer.alive_counts() == {'embedding': 5, 'conv': 4, 'lstm': 2,
                                        'conv2': 2, 'logits': 2}
  # conv 2*6*3*5*4; lstm 2*6*4*2*(4+2); conv2 2*4*3*2*2; logits 2*2*2.
  flops = 720 + 576 + 96 + 8
  assert float(regularizer.cost()) == flops
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  data = np.random.default_rng(1).integers(0, 20, size=(2, 6))
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  np.testing.assert_allclose(rebuilt.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-5)


def test_a_chain_keeps_one_unit():
  x = keras.Input((5, 3))
  y = L.GRU(3, name='gru')(x)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('gru'), [0, 1, 2])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'gru': 1, 'logits': 2}
  assert regularizer.connecting_layers == ['gru']
  # gru 2*5*3*1*(3+1); logits 2*1*2.
  assert float(regularizer.cost()) == 120 + 4


def test_units_reaching_a_model_output_keep_their_width():
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  model = keras.Model(x, L.LSTM(2, name='lstm')(y))
  _kill_units(model.get_layer('lstm'), [0])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'embed': 8}
  # lstm 2*5*4*2*(8+2): both units counted.
  assert float(regularizer.cost()) == 240 + 800


def test_gamma_keeps_the_units_and_names_the_layer(caplog):
  x = keras.Input((5, 3))
  y = L.Dense(8, use_bias=False, name='embed')(x)
  y = L.BatchNormalization(name='embed_bn')(y)
  y = L.LSTM(4, return_sequences=True, name='lstm')(y)
  y = L.BatchNormalization(name='lstm_bn')(y)
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  gamma = model.get_layer('lstm_bn').gamma
  gamma.assign([0.0, 1.0, 1.0, 1.0])
  with caplog.at_level(logging.WARNING):
    regularizer = model_regularizer.ModelRegularizer(
        model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  messages = [r.getMessage() for r in caplog.records]
  assert ("Recurrent layer(s) 'lstm' (LSTM): GammaFlopsRegularizer "
          'regularizes no recurrent units') in ' '.join(messages)
  # The zero gamma does not remove a unit: embed 2*5*3*8, lstm
  # 2*5*4*4*(8+4), logits 2*4*2.
  assert float(regularizer.cost()) == 240 + 1920 + 16
  assert regularizer.alive_counts() == {'embed': 8}


def test_unit_weights_of_other_layers_is_none():
  assert recurrent.unit_weights(L.Dense(2), lambda v: None) is None


def test_activation_not_zero_at_zero_keeps_the_units_with_a_warning(caplog):
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  y = L.SimpleRNN(4, activation='sigmoid', name='rnn')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('rnn'), [0])
  with caplog.at_level(logging.WARNING):
    regularizer = _group_lasso(model)
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert ("'rnn': it is the output of recurrent layer 'rnn' (SimpleRNN), "
          'whose units keep their width (its activation is not 0 at 0'
          ) in messages
  assert regularizer.alive_counts() == {'embed': 8, 'logits': 2}
  # rnn 2*5*1*4*(8+4); logits 2*4*2.
  assert float(regularizer.cost()) == 240 + 480 + 16


def test_shared_layer_has_one_unit_group():
  first, second = keras.Input((5, 3)), keras.Input((5, 3))
  embed, lstm = L.Dense(8, name='embed'), L.LSTM(4, name='lstm')
  y = L.Concatenate()([lstm(embed(first)), lstm(embed(second))])
  model = keras.Model([first, second], L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('lstm'), [2])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'embed': 8, 'lstm': 3, 'logits': 2}
  # Two calls: embed 2 x 2*5*3*8, lstm 2 x 2*5*4*3*(8+3), logits 2*6*2.
  flops = 480 + 2640 + 24
  assert float(regularizer.cost()) == flops
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  data = [DATA, DATA[::-1]]
  np.testing.assert_allclose(rebuilt.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == flops


def test_the_term_reaches_every_unit_weight():
  model = _stacked()
  regularizer = _group_lasso(model)
  regularizer.set_strength(1.0)
  lstm = model.get_layer('lstm')
  with tf.GradientTape() as tape:
    loss = regularizer.loss()
  gradients = tape.gradient(loss, lstm.trainable_weights)
  assert [tuple(g.shape) for g in gradients] == [(8, 16), (4, 16), (16,)]
  # The dead unit 1's weights are exactly 0: the group lasso has a zero
  # gradient there; every weight of the alive units gets one.
  kernel = gradients[0].numpy()
  assert np.all(kernel[:, [1, 5, 9, 13]] == 0.0)
  assert np.all(kernel[:, [0, 2, 3, 4, 6, 7]] != 0.0)


def test_gamma_keeps_the_channels_added_to_the_units():
  x = keras.Input((5, 3))
  y = L.Dense(8, name='embed')(x)
  side = L.Dense(4, use_bias=False, name='side')(y)
  side = L.BatchNormalization(name='side_bn')(side)
  y = L.Add()([L.LSTM(4, return_sequences=True, name='lstm')(y), side])
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  model.get_layer('side_bn').gamma.assign([0.0, 1.0, 1.0, 1.0])
  regularizer = model_regularizer.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  # side_bn's zero gamma removes nothing: the Add shares its channels with
  # the units. embed 2*5*3*8, lstm 2*5*4*4*(8+4), side 2*5*8*4, logits
  # 2*4*2.
  assert float(regularizer.cost()) == 240 + 1920 + 320 + 16
  assert regularizer.alive_counts() == {'side': 4}


def test_a_users_handler_of_the_output_op_type_still_serves_it():
  x = keras.Input((5, 3))
  y = L.GRU(3, name='gru')(L.Dense(8, name='embed')(x))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _kill_units(model.get_layer('gru'), [1])
  user = slice_op_handler.SliceOpHandler()
  regularizer = _group_lasso(model, op_handler_dict={'StridedSlice': user})
  manager = regularizer.op_regularizer_manager
  output_op = regularizer._recurrent.unit_calls()[0].unit_ops[0]  # pylint: disable=protected-access
  assert output_op.type == 'StridedSlice'
  handler = manager.get_handler(output_op)
  assert isinstance(handler, recurrent.UnitSourceHandler)
  assert handler._op_handler is user  # pylint: disable=protected-access
  assert regularizer.alive_counts()['gru'] == 2
  # embed 2*5*3*8, gru 2*5*3*2*(8+2), logits 2*2*2.
  assert float(regularizer.cost()) == 240 + 600 + 8
