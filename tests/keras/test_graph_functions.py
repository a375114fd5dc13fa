"""Tests for morph_net.keras.graph_functions (functions of a traced graph)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.keras import graph_functions
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import surgery_models as tm


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _traced_term_and_cost():
  model = tm.residual_model()
  tm.randomize_batch_norms(model)
  traced = tracing.TracedModel(model)
  regularizer = traced.build_regularizer(
      flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  with traced.graph.as_default():
    fetches = {'term': regularizer.get_regularization_term(),
               'cost': regularizer.get_cost()}
  return model, traced, fetches


def _values_and_gradient(function, variable):
  with tf.GradientTape() as tape:
    values = function()
  return values, tape.gradient(values['term'], variable)


def test_values_and_gradients_equal_a_pruned_function():
  model, traced, fetches = _traced_term_and_cost()
  gamma = model.get_layer('b1_conv1_bn').gamma.value
  got, got_gradient = _values_and_gradient(
      graph_functions.subgraph_function(traced.function, fetches), gamma)
  want, want_gradient = _values_and_gradient(
      traced.function.prune(feeds=[], fetches=fetches), gamma)
  assert set(got) == {'term', 'cost'}
  assert float(got['term']) == float(want['term'])
  assert float(got['cost']) == float(want['cost']) == tm.hand_flops(model)
  np.testing.assert_array_equal(got_gradient.numpy(), want_gradient.numpy())
  assert np.all(got_gradient.numpy() > 0)


def test_values_follow_the_live_variables_inside_a_tf_function():
  model, traced, fetches = _traced_term_and_cost()
  cost = graph_functions.subgraph_function(traced.function, fetches['cost'])
  compiled = tf.function(cost)
  full = tm.hand_flops(model)
  assert float(compiled()) == full
  bn = model.get_layer('b1_conv1_bn')
  gamma = keras.ops.convert_to_numpy(bn.gamma).copy()
  gamma[:4] = 0.0  # b1_conv1: 2 of 6 channels stay alive.
  bn.gamma.assign(gamma)
  # b1_conv1 (3x3, 16x16, 8 -> 6) and b1_conv2 (6 -> 8) lose 4 of 6.
  removed = 4 * 2 * 16 * 16 * 9 * 8 * 2
  assert float(compiled()) == full - removed


def test_a_value_depending_on_the_model_input_is_refused():
  model = tm.residual_model()
  traced = tracing.TracedModel(model)
  with pytest.raises(errors.UnsupportedGraphError,
                     match=r"depends on the model input through op "
                     r"'.*' \(Placeholder\)"):
    graph_functions.subgraph_function(traced.function,
                                      traced.graph.outputs[0])
