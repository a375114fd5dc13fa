"""GammaL1Regularizer built alone and built together with others."""

import numpy as np
import tensorflow as tf

from morph_net.framework import manager_util
from morph_net.op_regularizers import gamma_l1_regularizer

_GAMMAS = ([0.5, -2.0, 0.001], [-0.0005, 3.0], [0.02, -0.2, 0.0, 7.0])


def _ops_added(graph, build):
  before = len(graph.get_operations())
  build()
  return len(graph.get_operations()) - before


def _regularizers(variables, thresholds):
  return [gamma_l1_regularizer.GammaL1Regularizer(v.read_value(), t)
          for v, t in zip(variables, thresholds)]


class GammaL1TogetherTest(tf.test.TestCase):

  def _vectors_and_gradients(self, together, thresholds):
    """Numpy vectors, alive vectors, d(sum of |gamma|)/d gamma; op count."""
    with tf.Graph().as_default() as graph:
      variables = [tf.compat.v1.Variable(g, use_resource=True)
                   for g in _GAMMAS]
      regularizers = _regularizers(variables, thresholds)
      added = _ops_added(graph, lambda: manager_util.build_together(
          regularizers) if together else [r.alive_vector
                                          for r in regularizers])
      vectors = [r.regularization_vector for r in regularizers]
      alive = [r.alive_vector for r in regularizers]
      total = tf.add_n([tf.reduce_sum(v * [1.0, 2.0, 3.0, 4.0][:len(g)])
                        for v, g in zip(vectors, _GAMMAS)])
      gradients = tf.gradients(total, variables)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        return session.run((vectors, alive, gradients)), added

  def test_same_values_and_gradients_as_alone(self):
    for thresholds in ((0.001, 0.001, 0.001), (0.001, 0.0, 0.5)):
      alone, _ = self._vectors_and_gradients(False, thresholds)
      together, _ = self._vectors_and_gradients(True, thresholds)
      for expected, actual in zip(alone, together):  # Vectors, alive, grads.
        for e, a in zip(expected, actual):  # One per regularizer.
          self.assertAllEqual(e, a)
    vectors, alive, gradients = together
    self.assertAllClose([0.02, 0.2, 0.0, 7.0], vectors[2])
    self.assertAllEqual([True, True, False], alive[0])
    self.assertAllEqual([False, False, False, True], alive[2])
    self.assertAllClose([1.0, -2.0, 3.0], gradients[0])  # sign * weight.

  def test_together_adds_a_fixed_number_of_ops(self):
    _, alone = self._vectors_and_gradients(False, (0.1,) * 3)
    _, together = self._vectors_and_gradients(True, (0.1,) * 3)
    # Alone: |gamma|, the threshold and the comparison per regularizer.
    self.assertEqual(9, alone)
    # Together: concat (and its axis), |.|, threshold, comparison and two
    # splits (each with its sizes and axis), for any number of regularizers.
    self.assertEqual(11, together)

  def test_eager_and_unknown_sizes_are_built_alone(self):
    eager = gamma_l1_regularizer.GammaL1Regularizer(
        tf.constant([0.5, -2.0]), 1.0)
    with tf.Graph().as_default():
      unknown = gamma_l1_regularizer.GammaL1Regularizer(
          tf.compat.v1.placeholder(tf.float32, [None]), 1.0)
      known = gamma_l1_regularizer.GammaL1Regularizer(
          tf.compat.v1.placeholder(tf.float32, [2]), 1.0)
      manager_util.build_together([eager, unknown, known])
      self.assertEqual('Abs', known.regularization_vector.op.type)
      self.assertEqual('Abs', unknown.regularization_vector.op.type)
    self.assertAllEqual([False, True], eager.alive_vector)
    self.assertAllClose(np.array([0.5, 2.0]), eager.regularization_vector)
