"""Costs of the Keras 3 lowerings the cost forms read: Einsum, loops.

Attention (MultiHeadAttention) lowers to projections, head-splitting
Reshapes and two Einsums of activations; EinsumDense to an Einsum with a
kernel; recurrent layers to a While loop, whose arithmetic the graph
analysis reports as not counted. Exact counts on a traced function and a
TF1 graph.
"""

import tensorflow as tf

from morph_net.network_regularizers import einsum_cost
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import lowering_graphs as lg

_CLASSES = (flop_regularizer.GroupLassoFlopsRegularizer,
            model_size_regularizer.GroupLassoModelSizeRegularizer)


def _attention(x):
  """Two heads of 4 over 6 tokens of 8 channels, then a 3-wide output."""
  def heads(name):
    projected = tf.tensordot(x, lg.weights([8, 8], name=name), 1)
    return tf.reshape(projected, [-1, 6, 2, 4])
  query, key, value = heads('q'), heads('k'), heads('v')
  scores = tf.nn.softmax(tf.einsum('aecd,abcd->acbe', key, query))
  attended = tf.einsum('acbe,aecd->abcd', scores, value)
  return tf.tensordot(tf.reshape(attended, [-1, 6, 8]),
                      lg.weights([8, 3], name='o'), 1)


def _einsum_dense(x):
  x = tf.tensordot(x, lg.weights([8, 8]), 1)  # A group-lasso source.
  hidden = tf.nn.relu(tf.einsum('abc,cd->abd', x, lg.weights([8, 5])))
  return tf.einsum('abd,de->abe', hidden, lg.weights([5, 3]))


def _recurrent(x):
  kernel = lg.weights([8, 8], name='cell')
  steps = tf.unstack(x, axis=1)

  def body(index, state):
    step = tf.gather(tf.stack(steps, 0), index)
    return index + 1, tf.tanh(tf.matmul(step + state, kernel))

  _, state = tf.while_loop(lambda i, s: i < 6, body,
                           [tf.constant(0), tf.zeros_like(steps[0])])
  return tf.matmul(tf.nn.relu(state), lg.weights([8, 3], name='out'))


class EinsumCostTest(tf.test.TestCase):

  def _check(self, build, flops, weights):
    for _, costs in (
        lg.traced_costs(build, tf.TensorSpec([None, 6, 8]), _CLASSES,
                        threshold=1e-6),
        lg.graph_costs(build, [None, 6, 8], _CLASSES, threshold=1e-6)):
      self.assertEqual([flops, weights], costs)

  def test_attention_products_are_quadratic_in_tokens(self):
    # Projections: 3 x 6 tokens x 8 x 8; each product: 2 heads x 6 x 6 x 4;
    # output: 6 x 8 x 3.
    self._check(_attention,
                3 * 2 * 6 * 8 * 8 + 2 * (2 * 2 * 6 * 6 * 4) + 2 * 6 * 8 * 3,
                3 * 8 * 8 + 8 * 3)

  def test_einsum_dense(self):
    self._check(_einsum_dense,
                2 * 6 * 8 * 8 + 2 * 6 * 8 * 5 + 2 * 6 * 5 * 3,
                8 * 8 + 8 * 5 + 5 * 3)

  def test_read_einsum(self):
    with tf.Graph().as_default():
      q = tf.zeros([1, 6, 2, 4])
      cost = einsum_cost.read_einsum(
          tf.einsum('aecd,abcd->acbe', q, q).op)
      self.assertEqual(einsum_cost.EinsumCost(2 * 6 * 2 * 4 * 6, 0, 4, 6,
                                              False), cost)
      diagonal = einsum_cost.read_einsum(
          tf.einsum('abc,abc->abc', q[:, :, 0], q[:, :, 1]).op)
      self.assertTrue(diagonal.depthwise)
      self.assertIsNone(einsum_cost.read_einsum(
          tf.einsum('...c,cd->...d', q, tf.zeros([4, 2])).op))


class LoopTest(tf.test.TestCase):

  def test_loop_is_reported_and_consumes_its_input(self):
    with tf.Graph().as_default():
      x = tf.compat.v1.placeholder(tf.float32, [1, 6, 8])
      y = _recurrent(x)
      reg = flop_regularizer.GroupLassoFlopsRegularizer(
          [y.op], input_boundary=[x.op], threshold=1e-6)
      with self.assertLogs('absl', level='WARNING') as logs:
        cost = reg.get_cost()
      message = '\n'.join(logs.output)
      self.assertRegex(message, r"Op '.*while' \(While\) is not costed by "
                       'flop_function: its loop body has convs or matmuls')
      self.assertEqual(1, message.count('is not costed'))
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        self.assertEqual(2 * 8 * 3, session.run(cost))


if __name__ == '__main__':
  tf.test.main()
