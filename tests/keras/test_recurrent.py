"""Tests for morph_net.keras.recurrent: recurrent layers costed from config."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net.keras import recurrent
from morph_net.keras import tracing
from morph_net.network_regularizers import resource_function as rf

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


class _Regularizer(object):

  def __init__(self, vector):
    self.regularization_vector = tf.constant(vector)
    self.alive_vector = self.regularization_vector > 0


class _Manager(object):
  """Gives every op the same regularizer (or none)."""

  def __init__(self, regularizer):
    self._regularizer = regularizer

  def get_regularizer(self, op):
    del op
    return self._regularizer


def _traced():
  x = keras.Input((7, 4))
  y = L.Bidirectional(L.LSTM(3), name='bi')(x)
  z = L.GRU(5, name='gru')(x)
  return tracing.TracedModel(keras.Model(x, L.Concatenate()([y, z])))


def test_calls_are_found_with_steps_inputs_and_gates():
  calls = recurrent.RecurrentCalls(_traced()).calls
  by_name = {call.layer.name: call for call in calls}
  assert sorted(by_name) == ['bi', 'gru']
  assert by_name['bi'].steps == 7
  assert by_name['bi'].input_channels == 4
  assert by_name['bi'].gate_units() == [12, 12]
  assert by_name['gru'].gate_units() == [15]
  assert all(call.output_ops for call in calls)


def test_cost_and_term_follow_the_input_regularizer():
  calls = recurrent.RecurrentCalls(_traced())
  manager = _Manager(_Regularizer([0.5, 0.0, 1.0, 2.0]))  # 3 of 4 alive.
  flops = float(calls.cost(manager, rf.flop_function))
  # bi: 2 x 2*7*4*3*(3+3); gru: 2*7*3*5*(3+5).
  assert flops == 2 * (2 * 7 * 12 * 6) + 2 * 7 * 15 * 8
  weights = float(calls.cost(manager, rf.model_size_function))
  assert weights == 2 * (12 * 6) + 15 * 8
  # The units are all alive: term = C x gates x units x sum(r_in).
  term = float(calls.term(manager, rf.flop_function))
  assert term == pytest.approx(2 * 7 * (12 + 12 + 15) * 3.5)


def test_without_input_regularizer_every_input_counts():
  calls = recurrent.RecurrentCalls(_traced())
  manager = _Manager(None)
  assert float(calls.cost(manager, rf.flop_function)) == (
      2 * (2 * 7 * 12 * 7) + 2 * 7 * 15 * 9)
  assert float(calls.term(manager, rf.flop_function)) == 0.0


def test_other_resources_are_not_counted_and_warned(caplog):
  calls = recurrent.RecurrentCalls(_traced())
  with caplog.at_level(logging.WARNING):
    cost = calls.cost(_Manager(None), rf.activation_size_function)
  assert float(cost) == 0.0
  messages = [r.getMessage() for r in caplog.records]
  assert ("Recurrent layer 'gru' (GRU): its activation_size_function cost "
          'is not counted') in ' '.join(messages)


def test_models_without_recurrent_layers_have_no_calls():
  x = keras.Input((4,))
  traced = tracing.TracedModel(keras.Model(x, L.Dense(2)(x)))
  calls = recurrent.RecurrentCalls(traced)
  assert calls.calls == []
  assert calls.input_ops() == [] and calls.output_ops() == []
  assert np.isclose(float(calls.cost(_Manager(None), rf.flop_function)), 0)
