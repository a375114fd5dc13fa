"""A channel shared by two FiGS gates gets the pressure of the soft Noisy-OR.

A group's value is 1 - prod_i(1 - m_i) over its gates' masks m_i (0/1 with
the gradient of p_i = sigmoid(log-odds_i)). Before, the chain rule through
the 0/1 masks gave gate i the factor prod_{j != i}(1 - m_j) = 0 whenever a
partner was open, so a residual group of gated branches never shrank
(the results table's ResNet: 5 of its 9 gates had a zero gradient).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net.framework import noisy_or
from morph_net.framework import probabilistic_grouping_regularizer
from morph_net.keras import layer_regularizer
from morph_net.op_regularizers import prob_gating_regularizer

L = keras.layers


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_noisy_or_value_and_partner_gradient():
  a = tf.Variable([2.0, -1.0])
  b = tf.Variable([1.0, 3.0])
  with tf.GradientTape() as tape:
    pa, pb = tf.sigmoid(a), tf.sigmoid(b)
    # Straight-through masks: value [l > 0], gradient of p.
    ma = tf.cast(a > 0, tf.float32) + pa - tf.stop_gradient(pa)
    mb = tf.cast(b > 0, tf.float32) + pb - tf.stop_gradient(pb)
    group = noisy_or.noisy_or([ma, mb], [pa, pb], tf)
    total = tf.reduce_sum(group)
  np.testing.assert_array_equal(group.numpy(), [1.0, 1.0])
  grad_a, grad_b = tape.gradient(total, [a, b])
  p_a, p_b = _sigmoid([2.0, -1.0]), _sigmoid([1.0, 3.0])
  # d/dl_a = (1 - p_b) p_a (1 - p_a); the old chain rule gave (1 - m_b) = 0.
  np.testing.assert_allclose(grad_a.numpy(), (1 - p_b) * p_a * (1 - p_a),
                             rtol=1e-5)
  np.testing.assert_allclose(grad_b.numpy(), (1 - p_a) * p_b * (1 - p_b),
                             rtol=1e-5)
  assert grad_a.numpy()[0] == pytest.approx(0.028237, abs=1e-6)


def test_noisy_or_of_one_vector_or_without_probabilities_is_plain():
  v = tf.constant([0.25, 0.5])
  np.testing.assert_allclose(noisy_or.noisy_or([v], [v], tf).numpy(),
                             [0.25, 0.5])
  w = tf.constant([0.5, 0.5])
  np.testing.assert_allclose(noisy_or.noisy_or([v, w], None, tf).numpy(),
                             [1 - 0.75 * 0.5, 1 - 0.5 * 0.5])


def test_grouping_regularizer_on_masks_passes_the_gradient():
  logits = [tf.Variable([2.0, 0.5]), tf.Variable([1.0, 1.5])]
  with tf.GradientTape() as tape:
    members = []
    for l in logits:
      p = tf.sigmoid(l)
      mask = tf.cast(l > 0, tf.float32) + p - tf.stop_gradient(p)
      members.append(prob_gating_regularizer.ProbGatingRegularizer(l, mask))
    grouped = (probabilistic_grouping_regularizer
               .ProbabilisticGroupingRegularizer(members))
    total = tf.reduce_sum(grouped.regularization_vector)
  np.testing.assert_array_equal(grouped.regularization_vector.numpy(),
                                [1.0, 1.0])
  grads = tape.gradient(total, logits)
  p0, p1 = _sigmoid([2.0, 0.5]), _sigmoid([1.0, 1.5])
  np.testing.assert_allclose(grads[0].numpy(), (1 - p1) * p0 * (1 - p0),
                             rtol=1e-5)
  np.testing.assert_allclose(grads[1].numpy(), (1 - p0) * p1 * (1 - p1),
                             rtol=1e-5)


def _two_gated_branches():
  """x -> (ca -> ga), (cb -> gb) -> add -> conv -> GAP -> logits."""
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  x = keras.Input((4, 4, 3))
  ya = L.Conv2D(4, 1, name='ca')(x)
  ya = activation_gating.LogisticSigmoidGating(
      name='ga', log_odds_init=keras.initializers.Constant(2.0))(ya)
  yb = L.Conv2D(4, 1, name='cb')(x)
  yb = activation_gating.LogisticSigmoidGating(
      name='gb', log_odds_init=keras.initializers.Constant(1.0))(yb)
  y = L.Add(name='add')([ya, yb])
  y = L.Conv2D(4, 1, name='c2')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


@pytest.mark.parametrize('engine', ['graph', 'layer'])
def test_both_gates_of_a_residual_group_are_pressed(engine):
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  model = _two_gated_branches()
  make = (morph_keras.ModelRegularizer if engine == 'graph'
          else layer_regularizer.LayerRegularizer)
  regularizer = make(model, 'LogisticSigmoidFlopsRegularizer')
  gates = [model.get_layer('ga'), model.get_layer('gb')]
  with tf.GradientTape() as tape:
    term = regularizer.term()
  grad_a, grad_b = [g.numpy() for g in tape.gradient(
      term, [gate.log_odds for gate in gates])]
  # Channel 0 is kept open (keep_first_channel_alive); channels 1-3 are
  # pressed through the group, in the ratio of the gates' probabilities:
  # (1 - p_b) p_a (1 - p_a) / ((1 - p_a) p_b (1 - p_b)) = p_a / p_b.
  assert np.all(grad_a[1:] > 0) and np.all(grad_b[1:] > 0)
  np.testing.assert_allclose(grad_a[1:] / grad_b[1:],
                             _sigmoid(2.0) / _sigmoid(1.0), rtol=1e-4)
  # The value is the masks' Noisy-OR: every channel open.
  assert regularizer.alive_counts()['ca'] == 4

