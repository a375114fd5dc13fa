"""ProbGatingRegularizer: vectors, the original's >= alive rule, errors."""

import tensorflow as tf

from morph_net import errors
from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import probabilistic_grouping_regularizer as pgr
from morph_net.op_regularizers import prob_gating_regularizer


class ProbGatingRegularizerTest(tf.test.TestCase):

  def test_mask_or_probability(self):
    logits = tf.constant([0.0, 2.0, -2.0])
    mask = tf.constant([0.1, 1.0, 0.0])
    on_mask = prob_gating_regularizer.ProbGatingRegularizer(
        logits, mask, alive_threshold=0.1)
    on_probability = prob_gating_regularizer.ProbGatingRegularizer(
        logits, mask, regularize_on_mask=False, alive_threshold=0.5,
        mask_as_alive_vector=False)
    self.assertAllClose([0.1, 1.0, 0.0], on_mask.regularization_vector)
    # Alive when the mask is at least the threshold (0.1 counts).
    self.assertAllEqual([True, True, False], on_mask.alive_vector)
    self.assertAllClose(tf.sigmoid(logits), on_probability.regularization_vector)
    self.assertAllEqual([True, True, False], on_probability.alive_vector)
    self.assertTrue(on_mask.is_probabilistic)
    grouped = pgr.ProbabilisticGroupingRegularizer([on_mask, on_probability])
    self.assertAllClose([1 - 0.9 * 0.5, 1.0, 1 - 1.0 * (1 - 0.11920292)],
                        grouped.regularization_vector)

  def test_shapes_must_be_vectors_of_one_size(self):
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'Expected float vectors of the same size. Received: logits '
        r'shape=\(3,\), mask shape=\(2,\)'):
      prob_gating_regularizer.ProbGatingRegularizer(tf.zeros([3]),
                                                    tf.zeros([2]))


class ConcatCheckTest(tf.test.TestCase):

  def test_incompatible_vectors_raise(self):

    class Broken(object):
      regularization_vector = tf.zeros([3])
      alive_vector = tf.ones([2], tf.bool)

    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'Cannot concatenate Broken: its regularization vector \(shape '
        r'\(3,\)\) and alive vector \(shape \(2,\)\) differ in size'):
      concat_and_slice_regularizers.ConcatRegularizer([Broken()])


if __name__ == '__main__':
  tf.test.main()
