"""The original's _logistic_sigmoid_sample and functional helper signatures."""

import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.probabilistic_gating import activation_gating as ag

keras = compat.get_keras()
_v1 = tf.compat.v1


def test_graph_sample_is_one_gating_op():
  with tf.Graph().as_default() as graph:
    logits = tf.constant([50.0, -50.0, 50.0], name='logits')
    mask = ag._logistic_sigmoid_sample(logits, 0.5, False)  # pylint: disable=protected-access
    gates = [op for op in graph.get_operations()
             if op.type == 'LogisticSigmoidGating']
    assert len(gates) == 1 and mask.op is gates[0]
    assert gates[0].inputs[0] is logits
    assert mask.shape.as_list() == [3]
    gradient, = tf.gradients(tf.reduce_sum(mask), logits)
    hard = ag._logistic_sigmoid_sample(logits, 0.5, True)  # pylint: disable=protected-access
    hard_gradient, = tf.gradients(tf.reduce_sum(hard * [1.0, 2.0, 3.0]),
                                  logits)
    with _v1.Session() as session:
      values = session.run([mask, gradient, hard, hard_gradient])
  np.testing.assert_allclose(values[0], [1.0, 0.0, 1.0], atol=1e-6)
  assert np.all(np.isfinite(values[1]))
  np.testing.assert_array_equal(values[2], [1.0, 0.0, 1.0])
  # The straight-through gradient is the relaxed sample's: finite, >= 0.
  assert np.all(np.isfinite(values[3])) and np.all(values[3] >= 0)


def test_straight_through_is_hard_and_soft_matches_probability():
  with tf.Graph().as_default():
    logits = tf.fill([4000], 0.5)
    soft = ag._logistic_sigmoid_sample(logits, 0.01, False)  # pylint: disable=protected-access
    hard = ag._logistic_sigmoid_sample(logits, tf.constant(0.01), True)  # pylint: disable=protected-access
    with _v1.Session() as session:
      soft_value, hard_value = session.run([soft, hard])
  assert set(np.unique(hard_value)) <= {0.0, 1.0}
  # P(open) = sigmoid(0.5) = 0.62.
  assert abs(np.mean(hard_value) - 0.622) < 0.05
  assert abs(np.mean(soft_value) - 0.622) < 0.05


def test_zero_temperature_is_a_hard_sample_without_gradient():
  with tf.Graph().as_default() as graph:
    logits = tf.constant([30.0, -30.0])
    mask = ag._logistic_sigmoid_sample(logits, 0.0, False)  # pylint: disable=protected-access
    assert not [op for op in graph.get_operations()
                if op.type == 'LogisticSigmoidGating']
    assert tf.gradients(mask, logits) == [None]
    with _v1.Session() as session:
      np.testing.assert_array_equal(session.run(mask), [1.0, 0.0])


def test_eager_sample():
  logits = tf.Variable([30.0, -30.0, 0.0])
  with tf.GradientTape() as tape:
    mask = ag._logistic_sigmoid_sample(logits, 1.0, True)  # pylint: disable=protected-access
    total = tf.reduce_sum(mask)
  assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
  assert mask.numpy()[0] == 1.0 and mask.numpy()[1] == 0.0
  assert np.all(np.isfinite(tape.gradient(total, logits).numpy()))


@pytest.mark.parametrize('tau, message', [
    ('hot', r"Expected a float or a tf.Tensor. Received: tau='hot' \(str\)"),
    (-1.0, 'Expected a non-negative temperature. Received: tau=-1.0'),
])
def test_bad_temperature_raises(tau, message):
  with pytest.raises(errors.InvalidArgumentError, match=message):
    ag._logistic_sigmoid_sample(tf.zeros([2]), tau, False)  # pylint: disable=protected-access


def test_helpers_take_the_original_gating_fn_axis_and_mode():
  calls = []

  def gating_fn(outputs, axis, is_training, **kwargs):
    calls.append((axis, is_training, kwargs))
    return outputs * 2.0

  relu = ag.gated_relu_activation(gating_fn, 3, True, temperature=0.5)
  out = relu(tf.constant([[[[-1.0, 2.0]]]]))
  wrapped = ag.add_gating_to_fn(tf.nn.relu6, gating_fn, -1, False,
                                log_odds_init=1.0)
  wrapped(tf.constant([[7.0]]))
  np.testing.assert_array_equal(out.numpy(), [[[[0.0, 4.0]]]])
  assert calls == [(3, True, {'temperature': 0.5}),
                   (-1, False, {'log_odds_init': 1.0})]


def test_functional_gate_takes_the_original_positional_order():
  inputs = keras.Input((4, 4, 3))
  # (activation, axis, is_training, temperature, straight_through,
  #  log_odds_init).
  outputs = ag.logistic_sigmoid_gating(inputs, 3, False, 0.25, True, -2.0,
                                       scope='gate')
  layer = keras.Model(inputs, outputs).get_layer('gate')
  assert (layer.axis, layer.temperature, layer.straight_through) == (
      3, 0.25, True)
  np.testing.assert_array_equal(layer.logits.numpy(), [-2.0] * 3)
  assert layer.logits is layer.log_odds
