"""Resource functions: the original's numbers per op, run-time shapes, errors.

Graph: x [1, 8, 6, 4] -> conv 3x3 stride 2 (5) [1, 4, 3, 5]; grouped conv
3x3 (groups 2, 4 -> 6); depthwise 3x3 x2 [1, 8, 6, 8]; transposed conv 3x3
stride 2 (4 -> 3) [1, 16, 12, 3]; dense 4 -> 7.
"""

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import resource_function as rf
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


def _ops():
  x = _v1.placeholder(tf.float32, [1, 8, 6, 4])
  conv = layers.conv2d(x, 5, 3, strides=2, name='conv').op
  grouped_kernel = _v1.get_variable('grouped', [3, 3, 2, 6], use_resource=True)
  grouped = tf.nn.conv2d(x, grouped_kernel, 1, 'SAME', name='grouped').op
  depthwise = layers.depthwise_conv2d(x, 3, depth_multiplier=2, name='dw').op
  transpose = layers.conv2d_transpose(x, 3, 3, strides=2, name='t').op
  dense = layers.dense(tf.reduce_mean(x, [1, 2]), 7, name='fc',
                       use_bias=False).op
  return conv, grouped, depthwise, transpose, dense


class CoefficientTest(tf.test.TestCase):

  def test_flop_and_weight_coefficients(self):
    with tf.Graph().as_default():
      conv, grouped, depthwise, transpose, dense = _ops()
      relu = tf.nn.relu(conv.outputs[0]).op
      self.assertEqual(2.0 * 4 * 3 * 9, rf.flop_coeff(conv))
      self.assertEqual(2.0 * 8 * 6 * 9 / 2, rf.flop_coeff(grouped))
      self.assertEqual(2.0 * 8 * 6 * 9, rf.flop_coeff(depthwise))
      self.assertEqual(2.0 * 8 * 6 * 9, rf.flop_coeff(transpose))
      self.assertEqual(2.0, rf.flop_coeff(dense))
      self.assertEqual(0.0, rf.flop_coeff(relu))
      self.assertEqual([9.0, 4.5, 9.0, 9.0, 1.0, 0.0], [
          rf.num_weights_coeff(op)
          for op in (conv, grouped, depthwise, transpose, dense, relu)])
      self.assertTrue(rf.is_flop_op(depthwise))
      self.assertFalse(rf.is_flop_op(relu))

  def test_is_flop_op_of_a_tensor_raises(self):
    with tf.Graph().as_default():
      tensor = tf.ones([2], name='ones')
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  'Expected a tf.Operation. Received: .*ones'
                                  '.*Tensor'):
        rf.is_flop_op(tensor)

  def test_kernel_of_unknown_size_raises(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      kernel = _v1.placeholder(tf.float32, [None, None, 2, 3])
      op = tf.nn.conv2d(x, kernel, 1, 'SAME', name='free').op
      with self.assertRaisesRegex(errors.UnsupportedGraphError,
                                  r"'free' \(Conv2D\) has a kernel of unknown "
                                  'size'):
        rf.flop_coeff(op)


class FunctionValuesTest(tf.test.TestCase):

  def test_flop_model_size_and_activations(self):
    with tf.Graph().as_default():
      conv, _, depthwise, _, dense = _ops()
      # conv: 5 -> 3 alive outputs of 4 -> 2 inputs, batch 2.
      self.assertEqual(2 * 216.0 * 2 * 3,
                       rf.flop_function(conv, False, 2, 3, 0.5, 1.5, 2))
      self.assertEqual(2 * 216.0 * (2 * 1.5 + 3 * 0.5),
                       rf.flop_function(conv, True, 2, 3, 0.5, 1.5, 2))
      self.assertEqual(9.0 * 5, rf.model_size_function(depthwise, False, 4, 5,
                                                       0.0, 0.0, 7))
      self.assertEqual(9.0 * (1.0 + 2.0),
                       rf.model_size_function(depthwise, True, 4, 5, 1.0, 2.0))
      # The original's activation count: output channels only.
      self.assertEqual(3, rf.activation_count_function(conv, False, 2, 3, 0,
                                                       0, 4))
      self.assertEqual(1.5, rf.activation_count_function(conv, True, 2, 3,
                                                         0.5, 1.5))
      # Activation size: batch x positions x channels.
      self.assertEqual(4 * 12 * 3, rf.activation_size_function(
          conv, False, 2, 3, 0, 0, 4))
      # A matmul has one position per example: the term is reg_outputs.
      self.assertEqual(2.0, rf.activation_size_function(dense, True, 4, 7, 0,
                                                        2.0))

  def test_memory_and_latency_are_tensors(self):
    with tf.Graph().as_default():
      conv, _, _, _, _ = _ops()
      add = tf.add(conv.outputs[0], conv.outputs[0]).op
      memory = rf.memory_function(conv, False, 4, 5, 0.0, 0.0)
      add_memory = rf.memory_function(add, True, 5, 5, 2.0, 2.0)
      # conv: 4 x (48 x 4 inputs + 9 x 4 x 5 weights + 12 x 5 outputs).
      conv_bytes = 4 * (48 * 4 + 180 + 12 * 5)
      flops = 2 * 108 * 20
      latency = rf.latency_function(conv, False, 4, 5, 0.0, 0.0, 10.0, 2.0)
      term = rf.latency_function(conv, True, 4, 5, 3.0, 2.0, 10.0, 2.0)
      compute_term = rf.latency_function(conv, True, 4, 5, 3.0, 2.0, 1.0,
                                         1e9)
      with _v1.Session() as session:
        values = session.run([memory, add_memory, latency, term,
                              compute_term])
    self.assertEqual(conv_bytes, values[0])
    # Two activation inputs and the output, regularization sum 2 each.
    self.assertEqual(4 * 12 * 2.0 * 3, values[1])
    # Memory bound: 1728 bytes / 2 GB/s > 4320 FLOPs / 10 GFLOP/s.
    self.assertAllClose(max(conv_bytes / 2.0, flops / 10.0), values[2])
    memory_term = 4 * (48 * 3.0 + 9 * (4 * 2.0 + 5 * 3.0) + 12 * 2.0)
    self.assertAllClose(memory_term / 2.0, values[3])
    self.assertAllClose(2 * 108 * (4 * 2.0 + 5 * 3.0), values[4])

  def test_unknown_spatial_size_is_read_at_run_time(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, None, None, 3])
      conv = layers.conv2d(x, 4, 3, strides=2, name='conv').op
      coeff = rf.flop_coeff(conv)
      cost = rf.flop_function(conv, False, 3, 4, 0, 0, 2)
      memory = rf.memory_function(conv, False, 3, 4, 0, 0)
      self.assertIsInstance(coeff, tf.Tensor)
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        values = session.run([coeff, cost, memory],
                             {x: np.zeros([1, 10, 7, 3], np.float32)})
    # Output 5 x 4 ('SAME', stride 2).
    self.assertEqual(2.0 * 20 * 9, values[0])
    self.assertEqual(2 * 2.0 * 20 * 9 * 3 * 4, values[1])
    self.assertEqual(4 * (70 * 3 + 9 * 12 + 20 * 4), values[2])


class LatencyFactoryTest(tf.test.TestCase):

  def test_bound_hardware_and_batch_size(self):
    fn = rf.latency_function_factory('P100', 3)
    self.assertEqual(rf.Hardware(9300.0, 732.0), fn.hardware)
    self.assertEqual(3, fn.batch_size)
    with tf.Graph().as_default():
      conv, _, _, _, _ = _ops()
      values = [fn(conv, False, 4, 5, 0.0, 0.0),
                rf.latency_function(conv, False, 4, 5, 0.0, 0.0, 9300.0,
                                    732.0, 3),
                fn(conv, False, 4, 5, 0.0, 0.0, batch_size=1)]
      with _v1.Session() as session:
        bound, direct, batch_one = session.run(values)
    self.assertEqual(direct, bound)
    self.assertAllClose(4 * (48 * 4 + 180 + 12 * 5) / 732.0, batch_one)

  def test_original_hardware_numbers(self):
    self.assertEqual((8740.0, 480.0), tuple(rf.get_hardware('K80')))
    self.assertEqual((8100.0, 300.0), tuple(rf.get_hardware('T4')))
    self.assertEqual((22500.0, 300.0), tuple(rf.get_hardware('TPUv2')))

  def test_bad_arguments_raise(self):
    with self.assertRaisesRegex(errors.InvalidArgumentError,
                                "hardware='apple'"):
      rf.latency_function_factory('apple', 66)
    with self.assertRaisesRegex(errors.InvalidArgumentError,
                                'hardware=None'):
      rf.latency_function_factory(None, 11)
    with self.assertRaisesRegex(errors.InvalidArgumentError,
                                'positive integer. Received: batch_size=0'):
      rf.latency_function_factory('V100', 0)


if __name__ == '__main__':
  tf.test.main()
