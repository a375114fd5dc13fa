"""FunctionCallOpHandler: calls of a function that runs one conv.

Keras 3 compiles a grouped Conv into a jit-compiled function called by a
StatefulPartitionedCall; the graphs below do the same with tf.function, on a
traced function and on a TF1 graph.
"""

import tensorflow as tf

from morph_net.framework import function_calls
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import lowering_graphs as lg

_CLASSES = (flop_regularizer.GroupLassoFlopsRegularizer,
            model_size_regularizer.GroupLassoModelSizeRegularizer)


def _grouped(x):
  """conv a (8) -> grouped conv g (4 groups, 16 filters, filter 5 dead)."""
  a = tf.nn.relu(lg.conv(x, [1, 1, 3, 8], name='a'))
  kernel = lg.weights([3, 3, 2, 16], dead=[5], name='g_kernel')
  grouped = tf.function(
      lambda t: tf.nn.conv2d(t, kernel, 1, 'VALID'), jit_compile=True)
  return tf.nn.relu(grouped(a))


def _two_convs(x):
  x = tf.nn.relu(lg.conv(x, [1, 1, 3, 3], name='c'))
  first = lg.weights([1, 1, 3, 4], name='first')
  second = lg.weights([1, 1, 4, 2], name='second')
  body = tf.function(lambda t: tf.nn.conv2d(
      tf.nn.conv2d(t, first, 1, 'SAME'), second, 1, 'SAME'))
  return tf.nn.relu(body(x))


def _call_op(manager):
  return [op for op in manager.ops
          if op.type in function_calls.CALL_OP_TYPES][0]


class FunctionCallTest(tf.test.TestCase):

  def test_grouped_conv_is_costed_with_its_groups(self):
    # a: 64 positions x 3 x 8; g: 36 positions x 9 x (8 inputs / 4 groups)
    # x 15 alive filters. Weights: 3 x 8 and 9 x 2 x 15.
    flops = 2 * 64 * 3 * 8 + 2 * 36 * 9 * 2 * 15
    weights = 3 * 8 + 9 * 2 * 15
    for manager, costs in (
        lg.traced_costs(_grouped, tf.TensorSpec([None, 8, 8, 3]), _CLASSES,
                        threshold=1e-6),
        lg.graph_costs(_grouped, [None, 8, 8, 3], _CLASSES, threshold=1e-6)):
      self.assertEqual([flops, weights], costs)
      call = _call_op(manager)
      self.assertIn(call, manager.source_ops)
      relu = call.outputs[0].consumers()[0]
      self.assertIs(manager.get_op_group(manager.get_op_slices(call)[0]),
                    manager.get_op_group(manager.get_op_slices(relu)[0]))
      # The inputs are consumed whole: not grouped with the outputs.
      a_relu = call.inputs[[t.dtype for t in call.inputs].index(
          tf.float32)].op
      self.assertIsNot(
          manager.get_op_group(manager.get_op_slices(call)[0]),
          manager.get_op_group(manager.get_op_slices(a_relu)[0]))

  def test_called_op_maps_the_body_to_the_call(self):
    with tf.Graph().as_default():
      x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 8])
      y = _grouped(x[..., :3])
      call = y.op.inputs[0].op
      called = function_calls.called_op(call)
      self.assertEqual('Conv2D', called.op.type)
      self.assertEqual([3, 3, 2, 16], called.op.inputs[1].shape.as_list())
      self.assertIs(call.outputs[0], called.output)
      self.assertEqual(tf.resource, called.weights.dtype)
      self.assertEqual([None, 8, 8, 8], called.activation.shape.as_list())
      self.assertIsNone(function_calls.called_op(y.op))

  def test_unreadable_body_warns_and_is_not_costed(self):
    with tf.Graph().as_default():
      x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 3])
      y = _two_convs(x)
      self.assertTrue(function_calls.body_has_weighted_ops(y.op.inputs[0].op))
      self.assertIsNone(function_calls.called_op(y.op.inputs[0].op))
      reg = flop_regularizer.GroupLassoFlopsRegularizer(
          [y.op], input_boundary=[x.op], threshold=1e-6)
      with self.assertLogs('absl', level='WARNING') as logs:
        cost = reg.get_cost()
        reg.get_regularization_term()
      message = '\n'.join(logs.output)
      self.assertRegex(
          message, r"Op 'StatefulPartitionedCall' \(StatefulPartitionedCall\) "
          'is not costed by flop_function: the function it calls is not a '
          'single conv or matmul')
      self.assertEqual(1, message.count('is not costed'))
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        # Only conv c: 16 positions x 3 x 3; the call is not counted.
        self.assertEqual(2 * 16 * 3 * 3, session.run(cost))


if __name__ == '__main__':
  tf.test.main()
