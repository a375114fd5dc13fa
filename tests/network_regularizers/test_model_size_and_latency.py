"""Model size, latency and activation costs of small hand-computed networks."""

import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import activation_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.network_regularizers import resource_function
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


_evaluate = layers.evaluate


class ModelSizeTest(tf.test.TestCase):

  def test_conv_chain(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, 3, name='a')
      b = layers.conv_bn_relu(a, 2, 1, name='b')
      reg = model_size_regularizer.GammaModelSizeRegularizer(
          [b.op], gamma_threshold=1e-3, input_boundary=[x.op])
      cost, term = _evaluate(
          [reg.get_cost(), reg.get_regularization_term()],
          {'a_bn/gamma': [0.5, 1.0, 2.0], 'b_bn/gamma': [0.25, 3.0]})
      dead_cost = _evaluate(reg.get_cost(), {'a_bn/gamma': [0.5, 0.0, 2.0]})
    self.assertEqual(3 * 3 * 2 * 3 + 1 * 1 * 3 * 2, cost)
    self.assertAllClose(9 * (2 * 3.5 + 3 * 0.0) + 1 * (3 * 3.25 + 2 * 3.5),
                        term)
    self.assertEqual(3 * 3 * 2 * 2 + 1 * 1 * 2 * 2, dead_cost)
    self.assertEqual('GammaModelSize', reg.name)
    self.assertEqual('ModelSize', reg.cost_name)

  def test_depthwise_transpose_and_matmul(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 3])
      d = layers.depthwise_conv2d(x, 3, depth_multiplier=2, name='d')
      t = layers.conv2d_transpose(d, 5, 3, strides=2, name='t')
      pooled = tf.reduce_mean(t, axis=[1, 2])
      y = layers.dense(pooled, 4, name='fc')
      reg = model_size_regularizer.GroupLassoModelSizeRegularizer(
          [y.op], threshold=1e-3)
      cost = _evaluate(reg.get_cost())
    # Depthwise: 3 * 3 weights per output channel (6); transposed conv
    # 3 * 3 * 6 * 5; dense 5 * 4 (the bias is not counted).
    self.assertEqual(3 * 3 * 6 + 3 * 3 * 6 * 5 + 5 * 4, cost)

  def test_conv3d(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 4, 2])
      y = layers.conv3d(x, 3, 3, strides=2, name='c3')
      reg = model_size_regularizer.GroupLassoModelSizeRegularizer(
          [y.op], threshold=1e-3)
      cost = _evaluate(reg.get_cost())
    self.assertEqual(3 * 3 * 3 * 2 * 3, cost)


class LatencyTest(tf.test.TestCase):
  """x [1, 4, 4, 2] -> conv 3x3 (3) -> batch norm.

  FLOPs: conv 2 * 16 * 9 * 2 * 3 = 1728, batch norm 0.
  Bytes (float32): conv 4 * (54 weights + 16 * 2 inputs + 16 * 3 outputs)
  = 536; batch norm 4 * (16 * 3 + 16 * 3) = 384.
  """

  conv_flops = 2 * 16 * 9 * 2 * 3
  conv_bytes = 4 * (3 * 3 * 2 * 3 + 16 * 2 + 16 * 3)
  bn_bytes = 4 * (16 * 3 + 16 * 3)

  def _cost_and_term(self, hardware, batch_size=1, gammas=None):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv2d(x, 3, 3, name='a_conv')
      y = layers.batch_norm(y, name='a_bn')
      reg = latency_regularizer.GammaLatencyRegularizer(
          [y.op], gamma_threshold=1e-3, hardware=hardware,
          batch_size=batch_size, input_boundary=[x.op])
      self.assertEqual('GammaLatency', reg.name)
      self.assertEqual('Latency', reg.cost_name)
      return _evaluate([reg.get_cost(), reg.get_regularization_term()],
                       gammas and {'a_bn/gamma': gammas})

  def test_flop_latency_device_counts_flops(self):
    cost, term = self._cost_and_term('FLOP_LATENCY')
    # 1 GFLOP/s: one ns per FLOP; memory time is negligible (1e20 GB/s).
    self.assertAllClose(self.conv_flops, cost)
    self.assertAllClose(2 * 16 * 9 * (2 * 3 + 3 * 0), term)

  def test_memory_latency_device_counts_bytes(self):
    cost, _ = self._cost_and_term('MEMORY_LATENCY')
    self.assertAllClose(self.conv_bytes + self.bn_bytes, cost)

  def test_custom_hardware_takes_max_per_op(self):
    # 2 GFLOP/s, 4 GB/s: the conv is compute bound (864 > 134), the batch norm
    # memory bound (0 < 96).
    cost, term = self._cost_and_term(resource_function.Hardware(2.0, 4.0))
    self.assertAllClose(self.conv_flops / 2.0 + self.bn_bytes / 4.0, cost)
    self.assertAllClose(1728 / 2.0 + 384 / 4.0, term)
    # 100 GFLOP/s, 1 GB/s: both memory bound.
    cost, _ = self._cost_and_term((100.0, 1.0))
    self.assertAllClose(self.conv_bytes + self.bn_bytes, cost)

  def test_latency_term_follows_the_dominant_resource(self):
    gammas = [0.5, 0.0, 2.0]  # 2 alive, sum |gamma| = 2.5.
    cost, term = self._cost_and_term((2.0, 4.0), gammas=gammas)
    conv_cost = 2 * 16 * 9 * 2 * 2 / 2.0  # Compute: 288 > 4 * 100 / 4.
    bn_cost = 4 * (16 * 2 + 16 * 2) / 4.0
    self.assertAllClose(conv_cost + bn_cost, cost)
    conv_term = 2 * 16 * 9 * (2 * 2.5) / 2.0
    bn_term = 4 * (16 * 2.5 + 16 * 2.5) / 4.0
    self.assertAllClose(conv_term + bn_term, term)

  def test_batch_size(self):
    cost, _ = self._cost_and_term('MEMORY_LATENCY', batch_size=2)
    # Weights are read once; activations once per example.
    expected = 4 * (54 + 2 * (16 * 2 + 16 * 3)) + 2 * self.bn_bytes
    self.assertAllClose(expected, cost)

  def test_hardware_table(self):
    # The original's V100 peak: the tensor-core figure (lead's decision).
    self.assertEqual(resource_function.Hardware(125000.0, 900.0),
                     resource_function.get_hardware('V100'))
    for name in ('K80', 'P4', 'T4', 'P100', 'V100', 'TPUv2', 'FLOP_LATENCY',
                 'MEMORY_LATENCY'):
      self.assertIn(name, resource_function.PEAK_COMPUTE)
      self.assertIn(name, resource_function.MEMORY_BANDWIDTH)

  def test_unknown_hardware(self):
    with self.assertRaisesRegex(errors.InvalidArgumentError,
                                r"hardware='V1000'.*|V1000"):
      resource_function.get_hardware('V1000')
    with self.assertRaisesRegex(errors.InvalidArgumentError, 'positive'):
      resource_function.get_hardware((0.0, 1.0))


class ActivationCountTest(tf.test.TestCase):

  def test_conv_chain(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 2])
      a = layers.conv_bn_relu(x, 3, 3, strides=2, name='a')
      b = layers.conv_bn_relu(a, 2, 1, name='b')
      reg = activation_regularizer.GammaActivationRegularizer(
          [b.op], gamma_threshold=1e-3)
      cost, term = _evaluate(
          [reg.get_cost(), reg.get_regularization_term()],
          {'a_bn/gamma': [0.5, 0.0, 2.0], 'b_bn/gamma': [0.25, 3.0]})
    # Alive output channels, as the original's activation_count_function:
    # the 4x4 output positions do not count.
    self.assertEqual(2 + 2, cost)
    self.assertAllClose(2.5 + 3.25, term)
