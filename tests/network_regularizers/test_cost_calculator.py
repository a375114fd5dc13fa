"""CostCalculator: the vectorized totals equal per-op sums; shapes; errors."""

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_calculator as cc
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import resource_function as rf
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1
GAMMAS = {'a_bn/gamma': [1.0, 0.0, 0.5, 0.25, 0.0, 2.0],
          'b_bn/gamma': [0.0, 1.0, 3.0],
          'c_bn/gamma': [0.5, 0.0, 0.0, 1.0, 1.0, 0.0],
          'd_bn/gamma': [1.0, 0.0] * 3,
          'e_bn/gamma': [0.0, 0.75, 1.0, 0.0, 1.0]}


def _per_op(function):
  """`function` without its coefficients: the calculator calls it per op."""

  def wrapped(*args, **kwargs):
    return function(*args, **kwargs)

  wrapped.costed_op_types = function.costed_op_types
  return wrapped


def _network():
  """Split, concat, residual add and depthwise conv; returns (x, output)."""
  x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
  a = layers.conv_bn_relu(x, 6, 3, name='a')
  s0, s1 = tf.split(a, [2, 4], axis=3)
  b = layers.conv_bn_relu(s0, 3, 1, name='b')
  concat = tf.concat([b, s1], axis=3)  # 7 channels.
  c = layers.conv_bn_relu(concat, 6, 3, strides=2, name='c')
  d = layers.batch_norm(layers.depthwise_conv2d(c, 3, name='dw'), name='d_bn')
  added = tf.nn.relu(tf.add(c, d))
  e = layers.conv_bn_relu(added, 5, 1, name='e')
  pooled = tf.reduce_mean(e, [1, 2])
  return x, layers.dense(pooled, 4, name='fc')


class VectorizedTotalsTest(tf.test.TestCase):

  def test_equal_to_per_op_calls(self):
    functions = [rf.flop_function, rf.model_size_function,
                 rf.activation_count_function, rf.activation_size_function,
                 rf.memory_function, rf.latency_function_factory((5.0, 3.0))]
    with tf.Graph().as_default():
      x, y = _network()
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op])
      manager = reg.op_regularizer_manager
      fetches = []
      for function in functions:
        for calculator in (cc.CostCalculator(manager, function),
                           cc.CostCalculator(manager, _per_op(function))):
          fetches.append([calculator.get_cost(),
                          calculator.get_regularization_term()])
      values = layers.evaluate(fetches, GAMMAS)
    for index, function in enumerate(functions):
      vectorized, per_op = values[2 * index], values[2 * index + 1]
      self.assertAllClose(per_op, vectorized, rtol=1e-6,
                          msg=getattr(function, '__name__', function))
    # FLOPs by hand: alive a 4 (b sees 1 of the 2 split channels, 3 pass),
    # b 2, concat 2 + 3 = 5, c/d group 4 (alive in c or in d), e 3.
    flops = (2 * 64 * 9 * 3 * 4 + 2 * 64 * 1 * 1 * 2 + 2 * 16 * 9 * 5 * 4 +
             2 * 16 * 9 * 4 + 2 * 16 * 1 * 4 * 3 + 2 * 3 * 4)
    self.assertEqual(flops, values[0][0])

  def test_term_size_does_not_grow_with_depth(self):
    added = []
    for depth in (3, 12):
      with tf.Graph().as_default() as graph:
        x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
        y = x
        for i in range(depth):
          y = layers.conv_bn_relu(y, 4, 3, name='l%d' % i)
        reg = flop_regularizer.GammaFlopsRegularizer(
            [y.op], gamma_threshold=0.1, input_boundary=[x.op])
        before = len(graph.get_operations())
        reg.get_regularization_term()
        middle = len(graph.get_operations())
        reg.get_cost()
        added.append((middle - before, len(graph.get_operations()) - middle))
    self.assertEqual(added[0], added[1])
    # The cost reuses the term's alive counts.
    self.assertLess(added[0][1], added[0][0])

  def test_empty_ops_mean_all_ops_and_subsets_add_up(self):
    with tf.Graph().as_default() as graph:
      x, y = _network()
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op])
      convs = [graph.get_operation_by_name(n) for n in
               ('a_conv/Conv2D', 'c_conv/Conv2D', 'fc/MatMul')]
      values = layers.evaluate(
          [reg.get_cost(), reg.get_cost([]), reg.get_cost(convs),
           [reg.get_cost([op]) for op in convs]], GAMMAS)
    self.assertEqual(values[0], values[1])
    self.assertEqual(values[2], sum(values[3]))
    self.assertEqual([2 * 64 * 9 * 3 * 4, 2 * 16 * 9 * 5 * 4, 2 * 3 * 4],
                     list(values[3]))

  def test_batch_size_is_passed_to_the_function(self):
    with tf.Graph().as_default():
      x, y = _network()
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op])
      single = cc.CostCalculator(reg.op_regularizer_manager, rf.flop_function)
      batch = cc.CostCalculator(reg.op_regularizer_manager, rf.flop_function,
                                batch_size=3)
      one, three = layers.evaluate([single.get_cost(), batch.get_cost()])
    self.assertEqual(3 * one, three)


class ShapesTest(tf.test.TestCase):

  def test_run_time_spatial_size_in_tf1_graph(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, None, None, 3])
      y = layers.conv_bn_relu(x, 4, 3, strides=2, name='a')
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op])
      cost = reg.get_cost()
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        small = session.run(cost, {x: np.zeros([1, 4, 4, 3])})
        large = session.run(cost, {x: np.zeros([1, 10, 6, 3])})
      strict = cc.CostCalculator(reg.op_regularizer_manager, rf.flop_function,
                                 dynamic_shapes=False)
      with self.assertRaisesRegex(
          errors.UnsupportedGraphError,
          r"'a_conv/Conv2D' \(Conv2D\) has an unknown output size .*fixed "
          'input size'):
        strict.get_cost()
    self.assertEqual(2 * 4 * 9 * 3 * 4, small)
    self.assertEqual(2 * 15 * 9 * 3 * 4, large)

  def test_traced_function_needs_static_sizes(self):

    def network(x):
      return layers.conv_bn_relu(x, 4, 3, name='a')

    traced = _v1.wrap_function(network, [tf.TensorSpec([1, None, None, 3])])
    graph = traced.graph
    with graph.as_default():
      reg = flop_regularizer.GammaFlopsRegularizer(
          [t.op for t in graph.outputs],
          input_boundary=[t.op for t in graph.inputs if t.dtype != tf.resource],
          gamma_threshold=0.1)
      with self.assertRaisesRegex(errors.UnsupportedGraphError,
                                  r"'a_conv/Conv2D' \(Conv2D\) has an unknown "
                                  'output size'):
        reg.get_cost()

  def test_conv_with_unknown_output_channels_raises(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 3])
      a = layers.conv_bn_relu(x, 2, 3, name='a')
      kernel = _v1.placeholder(tf.float32, [1, 1, 2, None])
      y = tf.nn.relu(tf.nn.conv2d(a, kernel, 1, 'SAME', name='free'))
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op, kernel.op])
      with self.assertRaisesRegex(
          errors.UnsupportedGraphError,
          r"'free' \(Conv2D\) has an unknown number of output channels "
          r'\(shape \(1, 4, 4, None\)\).*static channel dimension'):
        reg.get_cost()

  def test_uncosted_ops_are_reported(self):
    with tf.Graph().as_default():
      x, y = _network()
      reg = flop_regularizer.GammaFlopsRegularizer(
          [y.op], gamma_threshold=0.1, input_boundary=[x.op])
      total = tf.reduce_sum(y, name='total')
      memory = cc.CostCalculator(reg.op_regularizer_manager,
                                 rf.memory_function)
      with self.assertLogs(level='WARNING') as logs:
        memory.get_cost([total.op])
        reg.get_cost([y.op.inputs[0].op.inputs[0].op])  # The Relu before fc.
    text = '\n'.join(logs.output)
    self.assertIn("Op 'total' (Sum) is not costed by memory_function: its "
                  'output has no static channel dimension', text)
    self.assertIn('No op among the 1 given is costed by flop_function', text)


class InputActivationTest(tf.test.TestCase):

  def test_activation_inputs_and_errors(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 3])
      conv = layers.conv2d(x, 2, 3, name='conv')
      transposed = layers.conv2d_transpose(x, 2, 3, name='t')
      flat = tf.reshape(x, [1, 48], name='flat')
      weights = _v1.get_variable('w', [48, 5], use_resource=True)
      product = tf.matmul(flat, weights, name='product')
      transposed_a = tf.matmul(tf.transpose(flat), tf.ones([48, 2]),
                               transpose_a=True, name='product_ta')
      self.assertIs(x, cc.get_input_activation(conv.op))
      self.assertIs(x, cc.get_input_activation(transposed.op))
      self.assertIs(flat, cc.get_input_activation(product.op))
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  r"'flat' \(Reshape\) has no input "
                                  'activation'):
        cc.get_input_activation(flat.op)
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  r"'product_ta' \(MatMul\) multiplies a "
                                  r'transposed activation \(transpose_a'):
        cc.get_input_activation(transposed_a.op)


if __name__ == '__main__':
  tf.test.main()
