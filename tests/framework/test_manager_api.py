"""The manager's handler-facing API: queue, grouping, slicing, and its errors."""

import collections
from unittest import mock

import tensorflow as tf

from morph_net import errors
from morph_net.framework import manager_util
from morph_net.framework import op_handler
from morph_net.framework import op_regularizer_manager as orm
from morph_net.op_handlers import batch_norm_source_op_handler
from morph_net.op_handlers import conv_source_op_handler
from morph_net.op_handlers import depthwise_convolution_op_handler
from morph_net.op_handlers import group_lasso_base_op_handler
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps
from morph_net.op_handlers import op_handlers
from morph_net.testing import slim_nets
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


def _op(name):
  return _v1.get_default_graph().get_operation_by_name(name)


def _conv_net():
  """x -> a (conv, bn, relu) -> b (conv, bn, relu); returns (x, b)."""
  x = _v1.placeholder(tf.float32, [1, 4, 4, 2], name='x')
  a = layers.conv_bn_relu(x, 3, 1, name='a')
  return x, layers.conv_bn_relu(a, 4, 1, name='b')


def _bare_manager():
  """A manager of no ops, whose groups a test sets by hand (the handlers
  say which ops are sources)."""
  manager = orm.OpRegularizerManager([],
                                     op_handlers.get_gamma_op_handler_dict())
  assert not manager.ops
  return manager


def _manager(output, x, **kwargs):
  return orm.OpRegularizerManager(
      [output.op], op_handlers.get_gamma_op_handler_dict(1e-3),
      input_boundary=[x.op], **kwargs)


def _identities(count, channels=6):
  x = tf.zeros([1, 2, 2, channels])
  return [tf.identity(x, name='id%d' % i).op for i in range(count)]


class QueueTest(tf.test.TestCase):

  def test_process_ops_and_process_ops_last(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      manager = _manager(b, x)
      relu_a, relu_b, conv_b = _op('a_relu'), _op('b_relu'), _op('b_conv/Conv2D')
      self.assertEmpty(manager._op_deque)
      manager.process_ops([relu_a, relu_b, relu_a])
      manager.process_ops([relu_b, x.op])  # Queued already; outside.
      manager.process_ops_last([conv_b, relu_a])
      # Popped from the right: relu_b, relu_a, then conv_b (queued last).
      self.assertEqual([conv_b, relu_a, relu_b], list(manager._op_deque))
      self.assertIn(conv_b, manager._op_deque)
      self.assertEqual(relu_b, manager._op_deque.pop())
      self.assertNotIn(relu_b, manager._op_deque)

  def test_ops_is_ordered_with_fast_membership(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      manager = _manager(b, x)
      ops = manager.ops
      self.assertIn(_op('a_conv/Conv2D'), ops)
      self.assertLen(ops, len(set(ops)))
      self.assertEqual(list(ops), ops)
      with self.assertRaises(TypeError) as context:
        ops.append(x.op)
      self.assertIn('OpRegularizerManager.ops is read-only; change a copy: '
                    'ops = list(manager.ops).', str(context.exception))
      self.assertNotIn(x.op, ops)
      names = [op.name for op in ops]
      self.assertLess(names.index('a_conv/Conv2D'), names.index('b_relu'))

  def test_op_queue_keeps_membership(self):
    queue = manager_util.OpQueue()
    queue.extend(['a', 'b'])
    queue.extendleft(['c'])
    queue.appendleft('d')
    self.assertEqual(['d', 'c', 'a', 'b'], list(queue))
    self.assertEqual('d', queue.popleft())
    self.assertNotIn('d', queue)
    queue.clear()
    self.assertNotIn('a', queue)


class GroupingTest(tf.test.TestCase):

  def test_merge_keeps_the_largest_group(self):
    with tf.Graph().as_default():
      manager = _bare_manager()
      slices = [manager.get_op_slices(op)[0] for op in _identities(5)]
      manager.group_op_slices(slices[:3])
      big = manager.get_op_group(slices[0])
      manager.group_op_slices([slices[3], slices[1]])
      self.assertIs(big, manager.get_op_group(slices[3]))
      self.assertEqual(slices[:4], big.op_slices)
      manager.group_op_slices([slices[4], slices[0]],
                              omit_source_op_slices=[slices[2]])
      self.assertIs(big, manager.get_op_group(slices[4]))
      self.assertEqual(slices, big.op_slices)
      # Identity is not a source: the slices joined with no source.
      self.assertEqual([], big.source_op_slices)

  def test_grouping_a_group_with_itself_changes_nothing(self):
    with tf.Graph().as_default():
      manager = _bare_manager()
      slices = [manager.get_op_slices(op)[0] for op in _identities(2)]
      for op_slice in slices:
        manager.create_op_group_for_op_slice(op_slice)
      manager.group_op_slices(slices)
      group, version = manager.get_op_group(slices[0]), manager._version
      manager.group_op_slices(slices[::-1])
      self.assertIs(group, manager.get_op_group(slices[1]))
      self.assertEqual(version, manager._version)
      manager.group_op_slices(slices, omit_source_op_slices=[slices[0]])
      self.assertEqual([slices[1]], group.source_op_slices)

  def test_slice_op_reslices_the_group(self):
    with tf.Graph().as_default():
      manager = _bare_manager()
      ops = _identities(2)
      manager.group_op_slices([manager.get_op_slices(op)[0] for op in ops])
      manager.slice_op(ops[0], [1, 2, 3])
      for op in ops:
        self.assertEqual([(0, 1), (1, 2), (3, 3)],
                         [tuple(s.slice) for s in manager.get_op_slices(op)])
      for index in range(3):
        self.assertIs(manager.get_op_group(manager.get_op_slices(ops[0])[index]),
                      manager.get_op_group(manager.get_op_slices(ops[1])[index]))

  def test_slice_op_errors(self):
    with tf.Graph().as_default():
      manager = _bare_manager()
      op = _identities(1)[0]
      manager.slice_op(op, [3, 3])
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        manager.slice_op(op, [2, 4])
      self.assertIn("Cannot slice op 'id0' (Identity) from sizes [3, 3] to "
                    '[2, 4]', str(context.exception))
      with self.assertRaises(ValueError) as context:
        manager.slice_op(op, [3, 4])
      self.assertIn('Error with op: id0: Total size for op slices do not '
                    'match', str(context.exception))

  def test_group_channel_ranges_out_of_range(self):
    with tf.Graph().as_default():
      manager = _bare_manager()
      a, b = _identities(2)
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        handler_steps.group_channel_ranges(a, 4, b, 0, 3, manager)
      self.assertIn("Cannot group channels [4, 7) of op 'id0' (Identity), "
                    'which has 6 channels', str(context.exception))
      handler_steps.group_channel_ranges(a, 3, b, 0, 3, manager)
      self.assertEqual([3, 3], [s.slice.size for s in manager.get_op_slices(a)])
      self.assertIs(manager.get_op_group(manager.get_op_slices(a)[1]),
                    manager.get_op_group(manager.get_op_slices(b)[0]))

  def test_get_regularizer_of_several_slices_is_cached(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2], name='x')
      a = layers.conv_bn_relu(x, 2, 1, name='a')
      concat = tf.concat([a, x], axis=3, name='concat')
      manager = _manager(concat, x)
      regularizer = manager.get_regularizer(_op('concat'))
      self.assertIs(regularizer, manager.get_regularizer(_op('concat')))
      self.assertEqual([4], regularizer.regularization_vector.shape.as_list())


class NotConvergedTest(tf.test.TestCase):

  def _split_into_adds(self):
    # The original's testSplit: a plain grouping handler cannot group the
    # consumers of a split's halves (size 5) with the split (size 10).
    x = _v1.placeholder(tf.float32, [1, 4, 4, 3], name='x')
    c1 = layers.conv_bn_relu(x, 10, 1, name='c1')
    halves = tf.split(c1, [5, 5], axis=3, name='split')
    out1 = tf.add(halves[0], layers.conv_bn_relu(x, 5, 1, name='c2'),
                  name='out1')
    out2 = tf.add(halves[1], layers.conv_bn_relu(x, 5, 1, name='c3'),
                  name='out2')
    handlers = collections.defaultdict(grouping_op_handler.GroupingOpHandler)
    handlers['FusedBatchNormV3'] = (
        batch_norm_source_op_handler.BatchNormSourceOpHandler(1e-3))
    handlers['Conv2D'] = op_handlers.get_gamma_op_handler_dict()['Conv2D']
    return x, [out1.op, out2.op], handlers

  def test_stalled_queue_raises_at_once(self):
    with tf.Graph().as_default():
      x, outputs, handlers = self._split_into_adds()
      with self.assertRaises(RuntimeError) as context:
        orm.OpRegularizerManager(outputs, handlers, input_boundary=[x.op])
    self.assertIsInstance(context.exception, errors.AnalysisNotConvergedError)
    message = str(context.exception)
    self.assertIn('OpRegularizerManager could not handle ops:', message)
    self.assertIn("'out1 (AddV2)'", message)
    self.assertIn('without changing any group', message)
    self.assertIn("op_handler_dict['", message)

  def test_the_project_registry_groups_split_halves(self):
    with tf.Graph().as_default():
      x, outputs, _ = self._split_into_adds()
      manager = orm.OpRegularizerManager(
          outputs, op_handlers.get_gamma_op_handler_dict(),
          input_boundary=[x.op])
      c1, c2 = [manager.get_op_slices(_op(n + '_bn/FusedBatchNormV3'))
                for n in ('c1', 'c2')]
      self.assertEqual([5, 5], [s.slice.size for s in c1])
      self.assertIs(manager.get_op_group(c1[0]), manager.get_op_group(c2[0]))

  def test_iteration_limit(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      with self.assertRaises(errors.AnalysisNotConvergedError) as context:
        _manager(b, x, iteration_limit=3)
    self.assertIn('it reached its iteration limit (3)', str(context.exception))


class ArgumentErrorsTest(tf.test.TestCase):

  def test_regex_lists(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      with self.assertRaises(errors.InvalidArgumentTypeError) as context:
        _manager(b, x, force_group='a_conv')
      self.assertIsInstance(context.exception, TypeError)
      self.assertIn('force_group must be a list of regex. Received: '
                    "'a_conv' (str). Pass a list, for example "
                    "force_group=['a_conv'].", str(context.exception))
      with self.assertRaises(errors.InvalidArgumentTypeError) as context:
        _manager(b, x, regularizer_blacklist=[3])
      self.assertIn('regularizer_blacklist must be a list of regex',
                    str(context.exception))
      with self.assertRaises(errors.InvalidArgumentError) as context:
        _manager(b, x, force_group=['a_conv('])
      self.assertIn("Invalid value for argument `force_group`: regex "
                    "'a_conv(' does not compile", str(context.exception))

  def test_force_group_of_sliced_op(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2], name='x')
      a = layers.conv_bn_relu(x, 2, 1, name='a')
      b = layers.conv_bn_relu(x, 2, 1, name='b')
      concat = tf.concat([a, b], axis=3, name='concat')
      c = layers.conv_bn_relu(concat, 4, 1, name='c')
      with self.assertRaises(errors.InvalidArgumentError) as context:
        _manager(c, x, force_group=['^c_conv/Conv2D$|^concat$'])
    self.assertIn('Cannot force-group ops with more than 1 OpSlice: '
                  "['concat']", str(context.exception))

  def test_boundary_objects(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      with self.assertRaises(errors.InvalidArgumentError) as context:
        orm.OpRegularizerManager([b.op], input_boundary=['x'])
      self.assertIn("Expected a list of tf.Operation of a graph (a TF1 graph "
                    "or a traced tf.function), received: 'x' (str)",
                    str(context.exception))
    with self.assertRaises(errors.InvalidArgumentError) as context:
      manager_util.check_boundary([tf.constant(1.0)], 'output_boundary')
    self.assertIn('eager tensors have no graph', str(context.exception))


class HandlerErrorsTest(tf.test.TestCase):

  def test_default_handlers_are_the_originals_empty_dict(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      with self.assertRaises(errors.KeyLookupError) as context:
        orm.OpRegularizerManager([b.op], input_boundary=[x.op])
    self.assertIsInstance(context.exception, KeyError)
    self.assertIn(
        "No op handler for op 'b_relu' (Relu): op_handler_dict has no entry "
        "for 'Relu'. Pass a registry that answers every type, such as "
        'morph_net.op_handlers.op_handlers.get_gamma_op_handler_dict(), or '
        "register one: op_handler_dict['Relu'] = "
        'grouping_op_handler.GroupingOpHandler().', str(context.exception))

  def test_plain_dict_missing_a_type_names_the_op(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      handlers = dict(op_handlers.get_gamma_op_handler_dict())
      del handlers['Relu']  # A plain dict does not answer unknown types.
      with self.assertRaises(errors.KeyLookupError) as context:
        orm.OpRegularizerManager([b.op], handlers, input_boundary=[x.op])
    self.assertIn("No op handler for op 'b_relu' (Relu)",
                  str(context.exception))

  def test_handlers_registered_for_the_wrong_type(self):
    with tf.Graph().as_default():
      x, b = _conv_net()
      manager = _manager(b, x)
      relu = _op('a_relu')
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        (depthwise_convolution_op_handler.DepthwiseConvolutionOpHandler()
         .assign_grouping(relu, manager))
      self.assertIn("handles DepthwiseConv2dNative ops, not op 'a_relu' "
                    '(Relu)', str(context.exception))
      handler = conv_source_op_handler.ConvSourceOpHandler(0.1)
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        handler.create_regularizer(orm.OpSlice(relu, orm.Slice(0, 3)))
      self.assertIn("handles Conv2D and Conv3D ops, not op 'a_relu' (Relu)",
                    str(context.exception))
      with self.assertRaises(NotImplementedError) as context:
        op_handler.OpHandler.create_regularizer(
            grouping_op_handler.GroupingOpHandler(),
            orm.OpSlice(relu, orm.Slice(0, 3)))
      self.assertIn("GroupingOpHandler is not a source op handler; cannot "
                    "create a regularizer for op 'a_relu' (Relu)",
                    str(context.exception))

  def test_group_lasso_reduce_dims_must_leave_one_dimension(self):

    class TwoOutputDims(group_lasso_base_op_handler.GroupLassoBaseSourceOpHandler):

      def _reduce_dims(self, op):
        return (0, 1)

    with tf.Graph().as_default():
      x, b = _conv_net()
      conv = _op('b_conv/Conv2D')
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        TwoOutputDims(0.1).create_regularizer(
            orm.OpSlice(conv, orm.Slice(0, 4)))
    self.assertIn("Op 'b_conv/Conv2D' (Conv2D): weights of rank 4 do not "
                  'match the reduction dimensions (0, 1) of TwoOutputDims',
                  str(context.exception))


class SlimNetsHelperTest(tf.test.TestCase):

  def test_unknown_network(self):
    with self.assertRaises(errors.InvalidArgumentError) as context:
      slim_nets.run_in_subprocess(['resnet_v1_51'])
    self.assertIn("Unknown networks ['resnet_v1_51']", str(context.exception))

  def test_failing_subprocess(self):
    with mock.patch.object(slim_nets.sys, 'executable', 'false'):
      with self.assertRaises(RuntimeError) as context:
        slim_nets.run_in_subprocess(['separable'])
    self.assertIn('slim_nets separable failed (exit code 1)',
                  str(context.exception))


if __name__ == '__main__':
  tf.test.main()
