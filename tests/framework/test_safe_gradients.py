"""Norms of all-zero groups: exact values and finite gradients."""

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.framework import grouping_regularizers
from morph_net.framework import safe_math
from morph_net.op_regularizers import group_lasso_regularizer


class _Fixed(object):
  """A regularizer stand-in reading given tensors."""

  def __init__(self, regularization_vector):
    self.regularization_vector = regularization_vector
    self.alive_vector = regularization_vector > 0


class SafeSqrtTest(tf.test.TestCase):

  def test_value_and_gradient(self):
    x = tf.constant([0.0, 4.0, 0.25])
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = safe_math.safe_sqrt(x)
    self.assertAllEqual([0.0, 2.0, 0.5], y)
    # d sqrt(x) / dx = 0.5 / sqrt(x); 0 (a subgradient) at 0.
    self.assertAllEqual([0.0, 0.25, 1.0], tape.gradient(y, x))

  def test_graph_mode_gradient(self):
    with tf.Graph().as_default():
      x = tf.compat.v1.placeholder(tf.float32, [2])
      gradient, = tf.gradients(tf.reduce_sum(safe_math.safe_sqrt(x)), x)
      with tf.compat.v1.Session() as session:
        self.assertAllEqual([0.0, 0.125],
                            session.run(gradient, {x: [0.0, 16.0]}))


class GroupLassoAtZeroTest(tf.test.TestCase):

  def test_zero_filter_has_zero_norm_and_finite_gradient(self):
    # [kh=1, kw=1, in=2, out=3]: output channel 1 is exactly zero.
    weights = tf.Variable([[[[3.0, 0.0, 1.0], [4.0, 0.0, -1.0]]]])
    with tf.GradientTape() as tape:
      regularizer = group_lasso_regularizer.GroupLassoRegularizer(
          weights, [0, 1, 2], threshold=0.01)
      total = tf.reduce_sum(regularizer.regularization_vector)
    norms = [np.sqrt(25.0 / 2), 0.0, 1.0]
    self.assertAllClose(norms, regularizer.regularization_vector)
    self.assertAllEqual([True, False, True], regularizer.alive_vector)
    gradient = tape.gradient(total, weights).numpy()
    self.assertTrue(np.all(np.isfinite(gradient)))
    # d sqrt(mean(w^2)) / dw = w / (n * norm), n = 2 weights per filter.
    expected = np.array([[[[3.0 / (2 * norms[0]), 0.0, 1.0 / 2],
                           [4.0 / (2 * norms[0]), 0.0, -1.0 / 2]]]])
    self.assertAllClose(expected, gradient)

  def test_l1_fraction_at_zero(self):
    weights = tf.Variable(tf.zeros([2, 2]))
    with tf.GradientTape() as tape:
      regularizer = group_lasso_regularizer.GroupLassoRegularizer(
          weights, [0], threshold=0.01, l1_fraction=0.5)
      total = tf.reduce_sum(regularizer.regularization_vector)
    self.assertAllEqual([0.0, 0.0], regularizer.regularization_vector)
    self.assertAllEqual(np.zeros([2, 2]), tape.gradient(total, weights))


class L2GroupingAtZeroTest(tf.test.TestCase):

  def test_all_zero_sources_give_finite_gradient(self):
    first = tf.Variable([0.0, 3.0])
    second = tf.Variable([0.0, 4.0])
    with tf.GradientTape() as tape:
      grouped = grouping_regularizers.L2GroupingRegularizer(
          [_Fixed(first * 1.0), _Fixed(second * 1.0)], threshold=0.5)
      total = tf.reduce_sum(grouped.regularization_vector)
    self.assertAllClose([0.0, 5.0], grouped.regularization_vector)
    self.assertAllEqual([False, True], grouped.alive_vector)
    gradients = tape.gradient(total, [first, second])
    self.assertAllClose([0.0, 0.6], gradients[0])
    self.assertAllClose([0.0, 0.8], gradients[1])

  def test_lazy_square_reuses_the_radicand(self):
    with tf.Graph().as_default():
      radicand = tf.constant([4.0])
      self.assertIs(radicand,
                    grouping_regularizers.lazy_square(tf.sqrt(radicand)))
      self.assertEqual('Square', grouping_regularizers.lazy_square(
          radicand).op.type)

  def test_a_group_of_one_is_an_error(self):
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        'regularizers_to_group`. Expected a list of at least 2'):
      grouping_regularizers.L2GroupingRegularizer(
          [_Fixed(tf.constant([1.0]))])


if __name__ == '__main__':
  tf.test.main()
