"""graph_util: per-channel vector shapes and weight operands."""

import tensorflow as tf

from morph_net.framework import graph_util

_v1 = tf.compat.v1


class ChannelVectorTest(tf.test.TestCase):

  def test_shapes(self):
    with tf.Graph().as_default():
      self.assertTrue(graph_util.is_channel_vector(tf.zeros([5])))
      self.assertTrue(graph_util.is_channel_vector(tf.zeros([1, 1, 1, 5]), 5))
      self.assertFalse(graph_util.is_channel_vector(tf.zeros([1, 1, 5]), 4))
      self.assertFalse(graph_util.is_channel_vector(tf.zeros([2, 5])))
      self.assertFalse(graph_util.is_channel_vector(tf.zeros([])))
      unknown = _v1.placeholder(tf.float32, [None, 5])
      self.assertFalse(graph_util.is_channel_vector(unknown))
      self.assertFalse(graph_util.is_channel_vector(
          _v1.placeholder(tf.float32, None)))


class HoldsWeightsTest(tf.test.TestCase):

  def test_variables_and_constants_are_weights(self):
    with tf.Graph().as_default():
      variable = _v1.get_variable('w', [3, 2], use_resource=True)
      self.assertTrue(graph_util.holds_weights(variable.read_value()))
      self.assertTrue(graph_util.holds_weights(tf.ones([3, 2])))
      # A large tf.ones is a Fill of constants.
      fill = tf.ones([64, 64])
      self.assertEqual('Fill', fill.op.type)
      self.assertTrue(graph_util.holds_weights(fill))
      self.assertTrue(graph_util.holds_weights(tf.identity(tf.ones([3, 2]))))

  def test_activations_are_not_weights(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [3, 2])
      self.assertFalse(graph_util.holds_weights(x))
      self.assertFalse(graph_util.holds_weights(x * 2.0))
      dynamic = _v1.placeholder(tf.float32, [None, 2])
      self.assertFalse(graph_util.holds_weights(
          tf.fill(tf.shape(dynamic), 1.0)))
