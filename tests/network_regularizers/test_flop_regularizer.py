"""FLOP cost and regularization term of small hand-computed TF1 networks."""

import numpy as np
import tensorflow as tf

from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


class GammaFlopsTest(tf.test.TestCase):

  def _evaluate(self, fetches, assignments=None):
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      for name, value in (assignments or {}).items():
        layers.assign(session, name, value)
      return session.run(fetches)

  def _regularizer(self, output, inputs=None, **kwargs):
    return flop_regularizer.GammaFlopsRegularizer(
        [output.op], gamma_threshold=1e-3,
        input_boundary=None if inputs is None else [inputs.op], **kwargs)

  def test_strided_valid_conv(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 9, 9, 3])
      y = layers.conv2d(x, 4, 3, strides=2, padding='VALID', name='a_conv')
      y = layers.batch_norm(y, name='a_bn')
      self.assertEqual([1, 4, 4, 4], y.shape.as_list())
      reg = self._regularizer(y, x)
      cost = self._evaluate(reg.get_cost())
    # (9 - 3) / 2 + 1 = 4 output rows and columns.
    self.assertEqual(2 * 4 * 4 * 3 * 3 * 3 * 4, cost)

  def test_strided_same_conv(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      y = layers.conv_bn_relu(x, 4, 3, strides=2, name='a')
      reg = self._regularizer(y, x)
      cost = self._evaluate(reg.get_cost())
    # ceil(8 / 2) = 4 output rows and columns.
    self.assertEqual(2 * 4 * 4 * 3 * 3 * 3 * 4, cost)

  def test_batch_size_multiplies_cost(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      y = layers.conv_bn_relu(x, 4, 3, strides=2, name='a')
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=1e-3, batch_size=3)
      cost = self._evaluate(reg.get_cost())
    self.assertEqual(3 * 2 * 4 * 4 * 3 * 3 * 3 * 4, cost)

  def test_depthwise_with_multiplier(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 3, 1, name='a')
      d = layers.depthwise_conv2d(a, 3, depth_multiplier=2, name='d')
      d = layers.batch_norm(d, name='d_bn')
      reg = self._regularizer(d, x)
      cost, term = self._evaluate(
          [reg.get_cost(), reg.get_regularization_term()])
      dead_cost = self._evaluate(
          reg.get_cost(),
          # Input channel 1 of the depthwise conv dies with both its outputs.
          {'a_bn/gamma': [1.0, 0.0, 1.0], 'd_bn/gamma': [1.0] * 2 + [0.0] * 2 +
                                                        [1.0] * 2})
    conv_a = 2 * 8 * 8 * 1 * 1 * 3 * 3
    depthwise = 2 * 8 * 8 * 3 * 3 * 6  # Linear in the 3 * 2 output channels.
    self.assertEqual(conv_a + depthwise, cost)
    # Depthwise term: C * (sum r_in + sum r_out) with all gammas 1.
    conv_a_term = 2 * 8 * 8 * (3 * 3 + 3 * 0)
    depthwise_term = 2 * 8 * 8 * 3 * 3 * (3 + 6)
    self.assertAllClose(conv_a_term + depthwise_term, term)
    self.assertEqual(2 * 8 * 8 * 3 * 2 + 2 * 8 * 8 * 3 * 3 * 4, dead_cost)

  def test_conv2d_transpose_uses_input_spatial_size(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 3])
      a = layers.conv_bn_relu(x, 3, 1, name='a')
      t = layers.conv2d_transpose(a, 5, 3, strides=2, name='t')
      t = layers.batch_norm(t, name='t_bn')
      self.assertEqual([1, 8, 8, 5], t.shape.as_list())
      reg = self._regularizer(t, x)
      cost = self._evaluate(reg.get_cost())
      dead_cost = self._evaluate(reg.get_cost(),
                                 {'t_bn/gamma': [1.0, 0.0, 0.0, 1.0, 1.0]})
    conv_a = 2 * 4 * 4 * 1 * 1 * 3 * 3
    transpose = 2 * 4 * 4 * 3 * 3 * 3 * 5  # 4 x 4 input, not 8 x 8 output.
    self.assertEqual(conv_a + transpose, cost)
    self.assertEqual(conv_a + 2 * 4 * 4 * 3 * 3 * 3 * 3, dead_cost)

  def test_matmul(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [2, 6])
      h = layers.dense(x, 4, name='fc1')
      y = layers.dense(tf.nn.relu(h), 3, name='fc2')
      reg = flop_regularizer.GroupLassoFlopsRegularizer([y.op], threshold=1e-3)
      cost = self._evaluate(reg.get_cost())
    # Per example: 2 * in * out for each matmul.
    self.assertEqual(2 * 6 * 4 + 2 * 4 * 3, cost)

  def test_concat_of_branches(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 2, 1, name='a')
      b = layers.conv_bn_relu(x, 3, 3, name='b')
      concat = tf.concat([a, b], axis=3)
      c = layers.conv_bn_relu(concat, 4, 1, name='c')
      reg = self._regularizer(c, x)
      cost = self._evaluate(reg.get_cost())
      dead_cost = self._evaluate(reg.get_cost(), {'a_bn/gamma': [0.0, 1.0],
                                                  'b_bn/gamma': [1.0, 0.0, 1.0],
                                                  'c_bn/gamma': [0.0, 1, 1, 1]})
    self.assertEqual(2 * 64 * (1 * 3 * 2 + 9 * 3 * 3 + 1 * 5 * 4), cost)
    self.assertEqual(2 * 64 * (1 * 3 * 1 + 9 * 3 * 2 + 1 * 3 * 3), dead_cost)

  def test_residual_add_uses_max_of_both_branches(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 4, 3, strides=2, name='a')
      b = layers.conv_bn_relu(a, 4, 3, name='b')
      c = layers.conv_bn_relu(tf.add(a, b), 5, 1, name='c')
      reg = self._regularizer(c, x)
      cost, term = self._evaluate([reg.get_cost(),
                                   reg.get_regularization_term()])
      gammas = {'a_bn/gamma': [1.0, 0.0, 0.0, 0.5],
                'b_bn/gamma': [0.25, 0.0, 0.0, 0.0],
                'c_bn/gamma': [1.0, 1.0, 1.0, 0.0, 0.0]}
      dead_cost, dead_term = self._evaluate(
          [reg.get_cost(), reg.get_regularization_term()], gammas)
    c_a, c_b, c_c = 2 * 16 * 9, 2 * 16 * 9, 2 * 16 * 1
    self.assertEqual(c_a * 3 * 4 + c_b * 4 * 4 + c_c * 4 * 5, cost)
    # All gammas 1: term = C * (in_alive * sum r_out + out_alive * sum r_in).
    self.assertAllClose(c_a * (3 * 4 + 4 * 0) + c_b * (4 * 4 + 4 * 4) +
                        c_c * (4 * 5 + 5 * 4), term)
    # Max grouping: the a/b group is [1, 0, 0, 0.5], 2 alive, sum 1.5.
    self.assertEqual(c_a * 3 * 2 + c_b * 2 * 2 + c_c * 2 * 3, dead_cost)
    self.assertAllClose(
        c_a * (3 * 1.5 + 2 * 0) + c_b * (2 * 1.5 + 2 * 1.5) +
        c_c * (2 * 3.0 + 3 * 1.5), dead_term)

  def test_split_along_channels(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 6, 1, name='a')
      s0, s1 = tf.split(a, [2, 4], axis=3)
      b = layers.conv_bn_relu(s0, 3, 1, name='b')
      c = layers.conv_bn_relu(s1, 5, 1, name='c')
      out = tf.concat([b, c], axis=3)
      reg = self._regularizer(out, x)
      cost = self._evaluate(reg.get_cost())
      dead_cost = self._evaluate(
          reg.get_cost(), {'a_bn/gamma': [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]})
    self.assertEqual(2 * 64 * (3 * 6 + 2 * 3 + 4 * 5), cost)
    self.assertEqual(2 * 64 * (3 * 4 + 1 * 3 + 3 * 5), dead_cost)

  def test_regularization_term_exact(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, 3, name='a')
      b = layers.conv_bn_relu(a, 2, 1, name='b')
      reg = self._regularizer(b, x)
      term, cost = self._evaluate(
          [reg.get_regularization_term(), reg.get_cost()],
          {'a_bn/gamma': [0.5, -1.0, 2.0], 'b_bn/gamma': [0.25, 3.0]})
    c_a, c_b = 2 * 16 * 9, 2 * 16 * 1
    # sum |gamma_a| = 3.5, sum |gamma_b| = 3.25; the input is not regularized.
    self.assertAllClose(c_a * (2 * 3.5 + 3 * 0.0) + c_b * (3 * 3.25 + 2 * 3.5),
                        term)
    self.assertEqual(c_a * 2 * 3 + c_b * 3 * 2, cost)

  def test_cost_of_selected_ops(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, 3, name='a')
      b = layers.conv_bn_relu(a, 2, 1, name='b')
      reg = self._regularizer(b, x)
      conv_b = tf.compat.v1.get_default_graph().get_operation_by_name(
          'b_conv/Conv2D')
      cost = self._evaluate(reg.get_cost([conv_b]))
    self.assertEqual(2 * 16 * 3 * 2, cost)

  def test_names(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, 3, name='a')
      reg = self._regularizer(a, x)
      self.assertEqual('GammaFlops', reg.name)
      self.assertEqual('FLOPs', reg.cost_name)


class GroupLassoFlopsTest(tf.test.TestCase):

  def test_conv3d(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 4, 2])
      y = layers.conv3d(x, 3, 3, name='c3')
      reg = flop_regularizer.GroupLassoFlopsRegularizer([y.op], threshold=1e-3)
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        cost = session.run(reg.get_cost())
    self.assertEqual(2 * 4 * 4 * 4 * 3 * 3 * 3 * 2 * 3, cost)

  def test_alive_after_zeroing_filters(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv2d(x, 3, 3, name='a')
      b = layers.conv2d(tf.nn.relu(a), 2, 1, name='b')
      reg = flop_regularizer.GroupLassoFlopsRegularizer(
          [b.op], threshold=1e-3, input_boundary=[x.op])
      kernel_a = layers.get_variable('a/kernel')
      kernel_b = layers.get_variable('b/kernel')
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        cost = session.run(reg.get_cost())
        session.run(kernel_a.assign(kernel_a * np.array([1.0, 0.0, 1.0],
                                                        np.float32)))
        session.run(kernel_b.assign(np.full([1, 1, 3, 2], 0.5, np.float32)))
        dead_cost, term = session.run([reg.get_cost(),
                                       reg.get_regularization_term()])
        r_a = session.run(tf.sqrt(tf.reduce_mean(tf.square(kernel_a),
                                                 [0, 1, 2])))
    self.assertEqual(2 * 16 * 9 * 2 * 3 + 2 * 16 * 1 * 3 * 2, cost)
    self.assertEqual(2 * 16 * 9 * 2 * 2 + 2 * 16 * 1 * 2 * 2, dead_cost)
    self.assertEqual(0.0, r_a[1])
    # Group lasso of b: sqrt(mean(0.5 ** 2)) = 0.5 per output channel.
    expected = (2 * 16 * 9 * (2 * np.sum(r_a) + 2 * 0.0) +
                2 * 16 * 1 * (2 * (0.5 + 0.5) + 2 * np.sum(r_a)))
    self.assertAllClose(expected, term)

  def test_matmul_transpose_b_split_into_two_heads(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [2, 6])
      w = _v1.get_variable('w', [4, 6], use_resource=True)  # [out, in].
      h = tf.matmul(x, w, transpose_b=True, name='mm')
      s0, s1 = tf.split(tf.nn.relu(h), [1, 3], axis=1)
      y = tf.concat([layers.dense(s0, 2, name='d0'),
                     layers.dense(s1, 2, name='d1')], 1)
      reg = flop_regularizer.GroupLassoFlopsRegularizer([y.op], threshold=1e-3)
      alive = reg.op_regularizer_manager.get_regularizer(h.op).alive_vector
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        cost = session.run(reg.get_cost())
        session.run(w.assign(w * np.array([[1], [0], [1], [0]], np.float32)))
        dead_cost, alive = session.run([reg.get_cost(), alive])
    self.assertEqual(2 * 6 * 4 + 2 * 1 * 2 + 2 * 3 * 2, cost)
    self.assertAllEqual([True, False, True, False], alive)
    # mm keeps 2 outputs; head 0 sees channel 0 (alive), head 1 sees
    # channels 1..3 of which only channel 2 is alive.
    self.assertEqual(2 * 6 * 2 + 2 * 1 * 2 + 2 * 1 * 2, dead_cost)
