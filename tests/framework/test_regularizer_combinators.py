"""Op regularizers and their combinators, evaluated eagerly on constants."""

import numpy as np
import tensorflow as tf

from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import constant_op_regularizer
from morph_net.framework import generic_regularizers
from morph_net.framework import grouping_regularizers
from morph_net.framework import op_handler_decorator
from morph_net.framework import probabilistic_grouping_regularizer
from morph_net.op_regularizers import gamma_l1_regularizer
from morph_net.op_regularizers import group_lasso_regularizer


class _FixedRegularizer(generic_regularizers.OpRegularizer):
  """An OpRegularizer with given vectors."""

  def __init__(self, regularization_vector, alive_vector):
    self._regularization_vector = tf.constant(regularization_vector,
                                              tf.float32)
    self._alive_vector = tf.constant(alive_vector, tf.bool)

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector


class GroupingRegularizersTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.first = _FixedRegularizer([0.5, 0.2, 0.0], [True, True, False])
    self.second = _FixedRegularizer([0.5, 0.0, 0.3], [True, False, True])

  def test_max(self):
    grouped = grouping_regularizers.MaxGroupingRegularizer(
        [self.first, self.second])
    self.assertAllClose([0.5, 0.2, 0.3], grouped.regularization_vector)
    self.assertAllEqual([True, True, True], grouped.alive_vector)

  def test_l2(self):
    grouped = grouping_regularizers.L2GroupingRegularizer(
        [_FixedRegularizer([3.0, 0.6, 0.0], [True] * 3),
         _FixedRegularizer([4.0, 0.8, 0.0], [True] * 3)], threshold=1.0)
    self.assertAllClose([5.0, 1.0, 0.0], grouped.regularization_vector)
    # Alive is recomputed from the L2 norm: 1.0 is not above the threshold.
    self.assertAllEqual([True, False, False], grouped.alive_vector)

  def test_probabilistic(self):
    grouped = (
        probabilistic_grouping_regularizer.ProbabilisticGroupingRegularizer(
            [self.first, self.second]))
    # 1 - (1 - p1) * (1 - p2).
    self.assertAllClose([1 - 0.5 * 0.5, 1 - 0.8 * 1.0, 1 - 1.0 * 0.7],
                        grouped.regularization_vector)
    self.assertAllEqual([True, True, True], grouped.alive_vector)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, 'regularizers_to_group'):
      grouping_regularizers.MaxGroupingRegularizer([])
    with self.assertRaisesRegex(ValueError, 'different sizes'):
      grouping_regularizers.MaxGroupingRegularizer(
          [self.first, _FixedRegularizer([1.0], [True])])


class SourceRegularizersTest(tf.test.TestCase):

  def test_gamma_l1(self):
    regularizer = gamma_l1_regularizer.GammaL1Regularizer(
        tf.constant([0.5, -2.0, 0.001, -0.0005]), gamma_threshold=0.001)
    self.assertAllClose([0.5, 2.0, 0.001, 0.0005],
                        regularizer.regularization_vector)
    self.assertAllEqual([True, True, False, False], regularizer.alive_vector)

  def test_group_lasso(self):
    # [in=2, out=3] weights; reduce over the input dimension.
    weights = tf.constant([[3.0, 1.0, 0.0], [4.0, -1.0, 0.0]])
    regularizer = group_lasso_regularizer.GroupLassoRegularizer(
        weights, [0], threshold=0.01)
    self.assertAllClose(
        [np.sqrt((9.0 + 16.0) / 2), np.sqrt((1.0 + 1.0) / 2), 0.0],
        regularizer.regularization_vector)
    self.assertAllEqual([True, True, False], regularizer.alive_vector)

  def test_group_lasso_with_l1_fraction(self):
    weights = tf.constant([[3.0, 1.0], [4.0, -1.0]])
    regularizer = group_lasso_regularizer.GroupLassoRegularizer(
        weights, [0], threshold=0.01, l1_fraction=0.25)
    expected = [0.75 * np.sqrt(12.5) + 0.25 * (3.0 + 4.0) / 2,
                0.75 * 1.0 + 0.25 * 1.0]
    self.assertAllClose(expected, regularizer.regularization_vector)

  def test_group_lasso_bad_l1_fraction(self):
    with self.assertRaisesRegex(ValueError, r'l1_fraction=1\.5'):
      group_lasso_regularizer.GroupLassoRegularizer(
          tf.ones([2, 2]), [0], threshold=0.01, l1_fraction=1.5)

  def test_constant(self):
    regularizer = constant_op_regularizer.ConstantOpRegularizer(3)
    self.assertAllClose([0.0, 0.0, 0.0], regularizer.regularization_vector)
    self.assertAllEqual([True, True, True], regularizer.alive_vector)
    self.assertTrue(generic_regularizers.dimensions_are_compatible(
        regularizer))


class ConcatAndSliceTest(tf.test.TestCase):

  def test_concat(self):
    regularizer = concat_and_slice_regularizers.ConcatRegularizer(
        [_FixedRegularizer([0.5, 0.2], [True, False]),
         constant_op_regularizer.ConstantOpRegularizer(1),
         _FixedRegularizer([0.3], [True])])
    self.assertAllClose([0.5, 0.2, 0.0, 0.3],
                        regularizer.regularization_vector)
    self.assertAllEqual([True, False, True, True], regularizer.alive_vector)

  def test_slicing_reference_is_lazy(self):
    calls = []

    def get_regularizer():
      calls.append(1)
      return _FixedRegularizer([0.1, 0.2, 0.3, 0.4], [True, False, True, False])

    regularizer = concat_and_slice_regularizers.SlicingReferenceRegularizer(
        get_regularizer, begin=1, size=2)
    self.assertEmpty(calls)
    self.assertAllClose([0.2, 0.3], regularizer.regularization_vector)
    self.assertAllEqual([False, True], regularizer.alive_vector)
    self.assertLen(calls, 2)
    regularizer.regularization_vector  # pylint: disable=pointless-statement
    self.assertLen(calls, 2)  # Cached.


class OpHandlerDecoratorTest(tf.test.TestCase):

  def test_scaling_regularizer(self):
    regularizer = op_handler_decorator.ScalingRegularizer(
        _FixedRegularizer([0.5, 0.25], [True, False]), scale=2.0)
    self.assertAllClose([1.0, 0.5], regularizer.regularization_vector)
    self.assertAllEqual([True, False], regularizer.alive_vector)


if __name__ == '__main__':
  tf.test.main()
