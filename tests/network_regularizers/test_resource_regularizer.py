"""Behaviour shared by network regularizers: decorators, errors, families."""

import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_decorator
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


_evaluate = layers.evaluate


class DecoratorTest(tf.test.TestCase):

  def test_scaling_decorator_doubles_the_term(self):
    gammas = {'a_bn/gamma': [0.5, 1.0, 2.0], 'b_bn/gamma': [0.25, 3.0]}
    results = []
    for decorator in (None, op_handler_decorator.ScalingRegularizer):
      with tf.Graph().as_default():
        x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
        a = layers.conv_bn_relu(x, 3, 3, name='a')
        b = layers.conv_bn_relu(a, 2, 1, name='b')
        reg = flop_regularizer.GammaFlopsRegularizer(
            [b.op], gamma_threshold=1e-3, input_boundary=[x.op],
            regularizer_decorator=decorator,
            decorator_parameters={'scale': 2.0} if decorator else None)
        results.append(_evaluate(
            [reg.get_regularization_term(), reg.get_cost()], gammas))
    (term, cost), (scaled_term, scaled_cost) = results
    expected = 2 * 16 * 9 * (2 * 3.5) + 2 * 16 * (3 * 3.25 + 2 * 3.5)
    self.assertAllClose(expected, term)
    self.assertAllClose(2 * expected, scaled_term)
    self.assertEqual(cost, scaled_cost)


class NoSourceTest(tf.test.TestCase):

  def test_gamma_regularizer_without_scale(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv_bn_relu(x, 3, name='a', scale=False)
      with self.assertRaises(errors.NoSourceOpsError) as context:
        flop_regularizer.GammaFlopsRegularizer([y.op], gamma_threshold=1e-3)
    message = str(context.exception)
    self.assertIn('GammaFlopsRegularizer', message)
    self.assertIn('scale=True', message)
    self.assertIn('GroupLasso', message)
    self.assertIn("'a_conv/Conv2D' (Conv2D)", message)

  def test_group_lasso_regularizer_without_weights(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4])
      w = _v1.placeholder(tf.float32, [4, 3])
      y = tf.matmul(x, w, name='product')  # Not a variable: not a source.
      with self.assertRaises(errors.NoSourceOpsError) as context:
        model_size_regularizer.GroupLassoModelSizeRegularizer(
            [y.op], threshold=1e-3)
    message = str(context.exception)
    self.assertIn('GroupLassoModelSizeRegularizer', message)
    self.assertIn("'product' (MatMul)", message)

  def test_group_lasso_constant_kernels_are_weights(self):
    # As in the original, a conv whose kernel is a constant (a frozen graph,
    # tf.ones) is a group lasso source; so is a matmul by a constant.
    with tf.Graph().as_default():
      image = tf.constant(0.0, shape=[1, 3, 3, 3])
      conv = tf.nn.conv2d(image, tf.ones([1, 1, 3, 2]), [1, 1, 1, 1], 'SAME')
      flops = flop_regularizer.GroupLassoFlopsRegularizer([conv.op], 0.1)
      x = _v1.placeholder(tf.float32, [1, 4])
      product = tf.matmul(x, tf.ones([4, 3]))
      size = model_size_regularizer.GroupLassoModelSizeRegularizer(
          [product.op], 0.1)
      self.assertTrue(flops.op_regularizer_manager.is_source_op(conv.op))
      cost, term, weights = _evaluate(
          [flops.get_cost(), flops.get_regularization_term(), size.get_cost()])
    # 2 x 9 positions x 1x1 kernel FLOPs per channel pair; every filter's
    # group lasso norm (root mean square of its weights) is 1, above the
    # threshold.
    self.assertEqual(18 * 3 * 2, cost)
    self.assertAllClose(18 * 3 * (1.0 + 1.0), term)
    self.assertEqual(4 * 3, weights)

  def test_group_lasso_on_network_without_scale(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv_bn_relu(x, 3, name='a', scale=False)
      reg = flop_regularizer.GroupLassoFlopsRegularizer([y.op], threshold=1e-3)
      self.assertEqual('GroupLassoFlops', reg.name)
      cost = _evaluate(reg.get_cost())
    self.assertEqual(2 * 16 * 9 * 2 * 3, cost)


if __name__ == '__main__':
  tf.test.main()
