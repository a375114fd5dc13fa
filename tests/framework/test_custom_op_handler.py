"""A custom op handler written only against the original's handler API.

`ReverseChannelsOpHandler` handles ReverseV2 over the channel axis, which no
built-in handler knows: output channel i is input channel C - 1 - i. It is
written the way the original MorphNet's handlers are (module paths of the
original, `op_handler_util`, `group_op_slices`, `process_ops`,
`process_ops_last`), and must group a network correctly here.
"""

import collections

import tensorflow as tf

from morph_net.framework import grouping_op_handler
from morph_net.framework import op_handler
from morph_net.framework import op_handler_util
from morph_net.framework import op_handlers
from morph_net.framework import op_regularizer_manager as orm
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


class ReverseChannelsOpHandler(op_handler.OpHandler):
  """ReverseV2 over channels: output channel i is input channel C - 1 - i."""

  @property
  def is_source_op(self):
    return False

  @property
  def is_passthrough(self):
    return False  # The input must not group with it channel for channel.

  def assign_grouping(self, op, op_reg_manager):
    input_ops = op_handler_util.get_input_ops(op, op_reg_manager)
    if op_handler_util.get_ops_without_groups(input_ops, op_reg_manager):
      # Wait until the input has groups, as the original's handlers do.
      op_reg_manager.process_ops(input_ops)
      op_reg_manager.process_ops_last([op])
      return
    size = op_handler_util.get_op_size(op)
    op_handler_util.reslice_ops(input_ops + [op], [1] * size, op_reg_manager)
    op_slices = op_reg_manager.get_op_slices(op)
    input_slices = op_reg_manager.get_op_slices(input_ops[0])
    for i, op_slice in enumerate(op_slices):
      op_reg_manager.group_op_slices([op_slice, input_slices[size - 1 - i]])
    output_ops = op_handler_util.get_output_ops(op, op_reg_manager)
    op_reg_manager.process_ops(
        op_handler_util.get_ops_without_groups(output_ops, op_reg_manager))

  def create_regularizer(self, _):
    raise NotImplementedError('Not a source op.')


def _op(name):
  return _v1.get_default_graph().get_operation_by_name(name)


def _build():
  x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
  a = layers.conv_bn_relu(x, 3, 1, name='a')
  b = layers.conv_bn_relu(x, 3, 1, name='b')
  reversed_a = tf.reverse(a, axis=[3], name='reverse')
  summed = tf.add(reversed_a, b, name='sum')
  return x, layers.conv_bn_relu(summed, 2, 1, name='c')


def _source_names(manager, op_slice):
  return sorted(s.op.name for s in manager.get_op_group(op_slice)
                .source_op_slices)


class CustomHandlerTest(tf.test.TestCase):

  def test_reverse_groups_mirrored_channels(self):
    for handlers in (op_handlers.get_gamma_op_handler_dict(1e-3),
                     collections.defaultdict(
                         grouping_op_handler.GroupingOpHandler,
                         op_handlers.get_gamma_op_handler_dict(1e-3))):
      with tf.Graph().as_default():
        x, c = _build()
        handlers['ReverseV2'] = ReverseChannelsOpHandler()
        manager = orm.OpRegularizerManager([c.op], handlers,
                                           input_boundary=[x.op])
        a_slices = manager.get_op_slices(_op('a_bn/FusedBatchNormV3'))
        b_slices = manager.get_op_slices(_op('b_bn/FusedBatchNormV3'))
        sum_slices = manager.get_op_slices(_op('sum'))
        self.assertEqual([1, 1, 1], [s.slice.size for s in a_slices])
        self.assertEqual([1, 1, 1], [s.slice.size for s in b_slices])
        for i in range(3):
          group = manager.get_op_group(b_slices[i])
          self.assertIs(group, manager.get_op_group(a_slices[2 - i]))
          self.assertIs(group, manager.get_op_group(sum_slices[i]))
          self.assertEqual(['a_bn/FusedBatchNormV3', 'b_bn/FusedBatchNormV3'],
                           _source_names(manager, b_slices[i]))
        self.assertIsNot(manager.get_op_group(a_slices[0]),
                         manager.get_op_group(a_slices[2]))
        # The input is not grouped with the reverse channel for channel.
        self.assertIsNot(
            manager.get_op_group(manager.get_op_slices(_op('a_relu'))[0]),
            manager.get_op_group(manager.get_op_slices(_op('reverse'))[0]))

  def test_alive_channels_follow_the_mirror(self):
    with tf.Graph().as_default():
      x, c = _build()
      handlers = op_handlers.get_gamma_op_handler_dict(1e-3)
      handlers['ReverseV2'] = ReverseChannelsOpHandler()
      manager = orm.OpRegularizerManager([c.op], handlers,
                                         input_boundary=[x.op])
      alive = manager.get_regularizer(_op('sum')).alive_vector
      # sum channel i is alive if b's channel i or a's channel 2 - i is.
      value = layers.evaluate(alive, {'a_bn/gamma': [1.0, 0.0, 0.0],
                                      'b_bn/gamma': [0.0, 0.0, 0.0]})
    self.assertAllEqual([False, False, True], value)


if __name__ == '__main__':
  tf.test.main()
