"""ReshapeOpHandler: channel-keeping and channel-repeating reshapes.

The graphs mirror Keras 3 lowerings: UpSampling2D nearest (ExpandDims ->
Tile -> Reshape per axis), Conv1D and pooling 1D (ExpandDims -> Conv2D ->
Squeeze), Flatten -> Dense (a Reshape merging positions into channels),
Dense on tokens (Tensordot: Transpose -> Reshape -> MatMul -> Reshape). Every
case is checked on a traced function (batch unknown where Keras leaves it
unknown) and on a TF1 graph, with exact FLOP and weight counts.
"""

import tensorflow as tf

from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.op_handlers import reshape_op_handler
from morph_net.testing import lowering_graphs as lg

_CLASSES = (flop_regularizer.GroupLassoFlopsRegularizer,
            model_size_regularizer.GroupLassoModelSizeRegularizer)


def _upsampling(x):
  a = tf.nn.relu(lg.conv(x, [3, 3, 3, 4], dead=[1], name='a'))
  up = tf.repeat(tf.repeat(a, 2, axis=1), 2, axis=2)
  return lg.conv(up, [1, 1, 4, 2], name='b')


def _conv1d(x):
  a = tf.squeeze(lg.conv(tf.expand_dims(x, 1), [1, 3, 2, 4], dead=[0, 3],
                         padding='VALID', name='a'), 1)
  pooled = tf.squeeze(tf.nn.max_pool2d(tf.expand_dims(tf.nn.relu(a), 1),
                                       [1, 2], [1, 2], 'VALID'), 1)
  return lg.conv(tf.expand_dims(pooled, 1), [1, 3, 4, 5], padding='VALID',
                 name='b')


def _flatten(x):
  a = tf.nn.relu(lg.conv(x, [1, 1, 2, 3], dead=[1], strides=2, name='a'))
  flat = tf.reshape(a, [-1, 12], name='flat')
  return tf.matmul(flat, lg.weights([12, 5]), name='fc')


def _tokens(x):
  a = tf.nn.relu(tf.tensordot(x, lg.weights([6, 4], dead=[2]), 1, name='a'))
  return tf.tensordot(a, lg.weights([4, 3]), 1, name='b')


class ChannelRepeatsTest(tf.test.TestCase):

  def test_repeats_of_reshapes(self):
    with tf.Graph().as_default():
      x = tf.zeros([2, 4, 4, 3])
      self.assertEqual(1, reshape_op_handler.channel_repeats(
          tf.reshape(x, [2, 16, 3]).op))
      self.assertEqual(4, reshape_op_handler.channel_repeats(
          tf.reshape(x, [2, 4, 12]).op))
      self.assertEqual(16, reshape_op_handler.channel_repeats(
          tf.reshape(x, [2, 48]).op))
      self.assertEqual(2, reshape_op_handler.channel_repeats(
          tf.reshape(x, [2, 8, 6]).op))
      # Channels split in two heads, or cut across: new channel spaces.
      self.assertIsNone(reshape_op_handler.channel_repeats(
          tf.reshape(tf.zeros([2, 4, 6]), [2, 4, 2, 3]).op))
      self.assertIsNone(reshape_op_handler.channel_repeats(
          tf.reshape(x, [2, 6, 8]).op))
      self.assertEqual(1, reshape_op_handler.channel_repeats(
          tf.expand_dims(x, 1).op))
      self.assertIsNone(reshape_op_handler.channel_repeats(
          tf.expand_dims(x, -1).op))
      self.assertEqual(1, reshape_op_handler.channel_repeats(
          tf.transpose(x, [0, 2, 1, 3]).op))
      self.assertIsNone(reshape_op_handler.channel_repeats(
          tf.transpose(x, [0, 3, 1, 2]).op))


class ReshapeCostTest(tf.test.TestCase):

  def _check(self, build, shape, flops, weights, batch_none=False):
    spec_shape = [None] + shape[1:] if batch_none else shape
    for costs in (lg.traced_costs(build, tf.TensorSpec(spec_shape),
                                  _CLASSES, threshold=1e-6),
                  lg.graph_costs(build, spec_shape, _CLASSES,
                                 threshold=1e-6)):
      manager, (flop_cost, weight_cost) = costs
      self.assertEqual(flops, flop_cost)
      self.assertEqual(weights, weight_cost)
    return manager

  def test_upsampling_nearest_follows_the_upstream_group(self):
    # a: 36 positions x 9 x 3 inputs x 3 alive; b: 144 positions x 3 alive
    # inputs x 2 (without the grouping b would count all 4 inputs).
    manager = self._check(_upsampling, [1, 6, 6, 3],
                          2 * 36 * 9 * 3 * 3 + 2 * 144 * 3 * 2,
                          9 * 3 * 3 + 3 * 2)
    reshapes = [op for op in manager.ops if op.type == 'Reshape' and
                op.outputs[0].shape.rank == 4]
    self.assertLen(reshapes, 2)
    a_group = manager.get_op_group(manager.get_op_slices(
        [op for op in manager.ops if op.type == 'Relu'][0])[0])
    for op in reshapes:
      self.assertIs(a_group, manager.get_op_group(
          manager.get_op_slices(op)[0]))

  def test_conv1d_and_pooling_1d_follow_the_upstream_group(self):
    # a: 8 positions x 3 x 2 x 2 alive; b: 2 positions x 3 x 2 alive x 5.
    self._check(_conv1d, [1, 10, 2], 2 * 8 * 3 * 2 * 2 + 2 * 2 * 3 * 2 * 5,
                3 * 2 * 2 + 3 * 2 * 5)

  def test_flatten_repeats_the_channels_over_positions(self):
    # a: 4 positions x 2 inputs x 2 alive; fc: (4 positions x 2 alive) x 5.
    manager = self._check(_flatten, [1, 4, 4, 2],
                          2 * 4 * 2 * 2 + 2 * 4 * 2 * 5, 2 * 2 + 4 * 2 * 5,
                          batch_none=True)
    flat = [op for op in manager.ops if op.name.endswith('flat')][0]
    relu = [op for op in manager.ops if op.type == 'Relu'][0]
    self.assertEqual([3] * 4,
                     [s.slice.size for s in manager.get_op_slices(flat)])
    relu_group = manager.get_op_group(manager.get_op_slices(relu)[0])
    for op_slice in manager.get_op_slices(flat):
      self.assertIs(relu_group, manager.get_op_group(op_slice))

  def test_dense_on_tokens_counts_every_position(self):
    # a: 8 rows x 6 x 3 alive; b: 8 rows x 3 alive x 3.
    self._check(_tokens, [1, 8, 6], 2 * 8 * 6 * 3 + 2 * 8 * 3 * 3,
                6 * 3 + 3 * 3, batch_none=True)

  def test_flatten_after_a_slice_keeps_the_slices(self):
    def build(x):
      a = tf.nn.relu(lg.conv(x, [1, 1, 2, 4], dead=[0], name='a'))
      b = tf.nn.relu(lg.conv(x, [1, 1, 2, 2], dead=[1], name='b'))
      flat = tf.reshape(tf.concat([a, b], 3), [1, 4 * 6])
      return tf.matmul(flat, lg.weights([24, 2]), name='fc')
    # a, b: 4 positions x 2 inputs x (3 + 1) alive; fc: 4 x 4 alive x 2.
    self._check(build, [1, 2, 2, 2], 2 * 4 * 2 * 4 + 2 * 4 * 4 * 2,
                2 * 4 + 4 * 4 * 2)

  def test_flatten_run_before_its_input_still_joins_the_input_groups(self):
    # The concat of `d` (the first source) runs the Flatten before the add
    # it reads has run: the Flatten gives the add's channels a group, and
    # the add must still run to join a's group with b's (relu(a) also feeds
    # b, so relu's handler leaves the add to the add's). It did not run:
    # b alone, all dead, made the flattened channels dead (cost 48).
    def build(x):
      d = lg.conv(x, [1, 1, 2, 1], name='d')
      a = tf.nn.relu(lg.conv(x, [1, 1, 2, 2], dead=[1], name='a'))
      b = lg.conv(a, [1, 1, 2, 2], dead=[0, 1], name='b')
      flat = tf.reshape(tf.add(a, b, name='sum'), [1, 8], name='flat')
      joined = tf.concat([flat, tf.reshape(d, [1, 4])], 1)
      return tf.matmul(joined, lg.weights([12, 2]), name='fc')
    # d, a: 4 positions x 2 inputs x 1 alive; b: 4 x 1 alive x 1 alive
    # (channel 0 of the group lives in a); fc: (4 x 1 + 4 x 1) x 2.
    manager = self._check(build, [1, 2, 2, 2],
                          2 * 4 * 2 * 1 * 2 + 2 * 4 * 1 * 1 + 2 * 8 * 2,
                          2 * 1 * 2 + 1 * 1 + 8 * 2)
    convs = {op.name.split('/')[-1]: op for op in manager.ops
             if op.type == 'Conv2D'}
    sources = manager.get_op_group(manager.get_op_slices(
        convs['b'])[0]).source_op_slices
    self.assertCountEqual([convs['a'], convs['b']],
                          [s.op for s in sources])


if __name__ == '__main__':
  tf.test.main()
