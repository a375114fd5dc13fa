"""OpRegularizerManager: grouping, force_group, blacklist, errors, scale."""

import time
from unittest import mock

import tensorflow as tf

from morph_net import errors
from morph_net.framework import grouping_regularizers
from morph_net.framework import op_regularizer_manager as orm
from morph_net.network_regularizers import flop_regularizer
from morph_net.op_handlers import op_handlers
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


def _op(name):
  return _v1.get_default_graph().get_operation_by_name(name)


def _manager(outputs, **kwargs):
  return orm.OpRegularizerManager(
      [t.op for t in outputs], op_handlers.get_gamma_op_handler_dict(1e-3),
      **kwargs)


def _source_names(group):
  return sorted(s.op.name for s in group.source_op_slices)


class GroupingTest(tf.test.TestCase):

  def test_conv_bn_relu_is_one_group(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv_bn_relu(x, 3, name='a')
      manager = _manager([y], input_boundary=[x.op])
      group = manager.get_op_group(
          manager.get_op_slices(_op('a_conv/Conv2D'))[0])
      self.assertEqual(3, group.size)
      self.assertEqual(['a_bn/FusedBatchNormV3'], _source_names(group))
      self.assertIs(group, manager.get_op_group(
          manager.get_op_slices(_op('a_relu'))[0]))
      self.assertEqual([_op('a_bn/FusedBatchNormV3')], manager.source_ops)
      self.assertNotIn(x.op, manager.ops)
      self.assertIn('a_bn/FusedBatchNormV3', str(group))

  def test_residual_add_groups_both_branches(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 4, name='a')
      b = layers.conv_bn_relu(a, 4, name='b')
      added = tf.add(a, b, name='residual')
      c = layers.conv_bn_relu(added, 5, 1, name='c')
      manager = _manager([c])
      group = manager.get_op_group(manager.get_op_slices(_op('residual'))[0])
      self.assertEqual(['a_bn/FusedBatchNormV3', 'b_bn/FusedBatchNormV3'],
                       _source_names(group))
      self.assertIs(group, manager.get_op_group(
          manager.get_op_slices(_op('b_conv/Conv2D'))[0]))
      c_group = manager.get_op_group(manager.get_op_slices(_op('c_relu'))[0])
      self.assertIsNot(group, c_group)
      self.assertIsInstance(manager.get_regularizer(_op('residual')),
                            grouping_regularizers.MaxGroupingRegularizer)

  def test_concat_slices_follow_inputs(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 2, 1, name='a')
      b = layers.conv_bn_relu(x, 3, 3, name='b')
      concat = tf.concat([a, b], axis=3, name='concat')
      c = layers.conv_bn_relu(concat, 4, 1, name='c')
      manager = _manager([c])
      slices = manager.get_op_slices(_op('concat'))
      self.assertEqual([(0, 2), (2, 3)], [tuple(s.slice) for s in slices])
      self.assertEqual(['a_bn/FusedBatchNormV3'],
                       _source_names(manager.get_op_group(slices[0])))
      self.assertEqual(['b_bn/FusedBatchNormV3'],
                       _source_names(manager.get_op_group(slices[1])))
      regularizer = manager.get_regularizer(_op('concat'))
      self.assertEqual([5], regularizer.regularization_vector.shape.as_list())

  def test_concat_with_unregularized_input_is_padded_alive(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 2, 1, name='a')
      concat = tf.concat([a, x], axis=3, name='concat')
      manager = _manager([concat])
      regularizer = manager.get_regularizer(_op('concat'))
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        layers.assign(session, 'a_bn/gamma', [0.5, 0.0])
        reg, alive = session.run([regularizer.regularization_vector,
                                  regularizer.alive_vector])
    self.assertAllClose([0.5, 0.0, 0.0, 0.0, 0.0], reg)
    self.assertAllEqual([True, False, True, True, True], alive)

  def test_split_outputs_are_slices_of_the_input_group(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 6, 1, name='a')
      s0, s1 = tf.split(a, [2, 4], axis=3, name='split')
      b = layers.conv_bn_relu(tf.nn.relu(s0, name='relu0'), 3, 1, name='b')
      c = layers.conv_bn_relu(tf.nn.relu(s1, name='relu1'), 5, 1, name='c')
      manager = _manager([b, c])
      # The split's channel space is its input's; output k is a slice of it.
      self.assertEqual((_op('split'), 0, 2), manager.channel_range(s0))
      self.assertEqual((_op('split'), 2, 4), manager.channel_range(s1))
      bn_slices = manager.get_op_slices(_op('a_bn/FusedBatchNormV3'))
      self.assertEqual([(0, 2), (2, 4)], [tuple(s.slice) for s in bn_slices])
      split_slices = manager.get_op_slices(_op('split'))
      self.assertEqual([(0, 2), (2, 4)], [tuple(s.slice) for s in split_slices])
      for bn_slice, split_slice, relu in zip(bn_slices, split_slices,
                                             ['relu0', 'relu1']):
        group = manager.get_op_group(bn_slice)
        self.assertIs(group, manager.get_op_group(split_slice))
        self.assertIs(group, manager.get_op_group(
            manager.get_op_slices(_op(relu))[0]))
        self.assertEqual(['a_bn/FusedBatchNormV3'], _source_names(group))

  def test_strided_slice_of_channels(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 6, 1, name='a')
      part = tf.identity(a[:, :, :, 1:4], name='part')
      manager = _manager([part])
      slices = manager.get_op_slices(_op('a_bn/FusedBatchNormV3'))
      self.assertEqual([(0, 1), (1, 3), (4, 2)],
                       [tuple(s.slice) for s in slices])
      self.assertIs(manager.get_op_group(slices[1]), manager.get_op_group(
          manager.get_op_slices(_op('part'))[0]))

  def test_depthwise_multiplier_maps_input_to_output_channels(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 3, 1, name='a')
      d = layers.depthwise_conv2d(a, 3, depth_multiplier=2, name='d')
      d = layers.batch_norm(d, name='d_bn')
      manager = _manager([d])
      a_slices = manager.get_op_slices(_op('a_bn/FusedBatchNormV3'))
      d_slices = manager.get_op_slices(_op('d/depthwise'))
      self.assertLen(a_slices, 3)
      self.assertLen(d_slices, 6)
      for i in range(3):
        for k in range(2):
          # Output channel i * m + k comes from input channel i.
          self.assertIs(manager.get_op_group(a_slices[i]),
                        manager.get_op_group(d_slices[i * 2 + k]))
      self.assertIsNot(manager.get_op_group(a_slices[0]),
                       manager.get_op_group(a_slices[1]))
      group = manager.get_op_group(a_slices[1])
      self.assertEqual(['a_bn/FusedBatchNormV3', 'd_bn/FusedBatchNormV3',
                        'd_bn/FusedBatchNormV3'], _source_names(group))

  def test_depthwise_multiplier_one_is_one_group(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 3, 1, name='a')
      d = layers.depthwise_conv2d(a, 3, name='d')
      manager = _manager([d])
      group = manager.get_op_group(manager.get_op_slices(_op('d/depthwise'))[0])
      self.assertEqual(3, group.size)
      self.assertEqual(['a_bn/FusedBatchNormV3'], _source_names(group))

  def test_l2_grouping_regularizer(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      a = layers.conv_bn_relu(x, 2, name='a')
      b = layers.conv_bn_relu(a, 2, name='b')
      added = tf.add(a, b, name='residual')
      manager = _manager(
          [added], create_grouping_regularizer=lambda regs: (
              grouping_regularizers.L2GroupingRegularizer(regs, 0.5)))
      regularizer = manager.get_regularizer(_op('residual'))
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        layers.assign(session, 'a_bn/gamma', [3.0, 0.3])
        layers.assign(session, 'b_bn/gamma', [4.0, 0.4])
        reg, alive = session.run([regularizer.regularization_vector,
                                  regularizer.alive_vector])
    self.assertAllClose([5.0, 0.5], reg)
    self.assertAllEqual([True, False], alive)


class ForceGroupAndBlacklistTest(tf.test.TestCase):

  def _two_towers(self, width_b=4):
    x = _v1.placeholder(tf.float32, [1, 4, 4, 3])
    a = layers.conv_bn_relu(x, 4, 1, name='a')
    b = layers.conv_bn_relu(x, width_b, 1, name='b')
    return x, tf.concat([a, b], axis=3, name='concat')

  def test_force_group_merges_unrelated_convs(self):
    with tf.Graph().as_default():
      _, out = self._two_towers()
      manager = _manager([out])
      a_slice = manager.get_op_slices(_op('a_conv/Conv2D'))[0]
      b_slice = manager.get_op_slices(_op('b_conv/Conv2D'))[0]
      self.assertIsNot(manager.get_op_group(a_slice),
                       manager.get_op_group(b_slice))
      manager = _manager([out], force_group=[r'^[ab]_conv/Conv2D$'])
      a_slice = manager.get_op_slices(_op('a_conv/Conv2D'))[0]
      b_slice = manager.get_op_slices(_op('b_conv/Conv2D'))[0]
      group = manager.get_op_group(a_slice)
      self.assertIs(group, manager.get_op_group(b_slice))
      self.assertEqual(['a_bn/FusedBatchNormV3', 'b_bn/FusedBatchNormV3'],
                       _source_names(group))

  def test_force_group_regex_matching_nothing(self):
    with tf.Graph().as_default():
      _, out = self._two_towers()
      with self.assertRaises(errors.InvalidArgumentError) as context:
        _manager([out], force_group=['no_such_op'])
    message = str(context.exception)
    self.assertIn("'no_such_op'", message)
    self.assertIn('Fix the regex', message)

  def test_force_group_of_different_widths(self):
    with tf.Graph().as_default():
      _, out = self._two_towers(width_b=5)
      with self.assertRaises(errors.InvalidArgumentError) as context:
        _manager([out], force_group=[r'^[ab]_conv/Conv2D$'])
    message = str(context.exception)
    self.assertIn(r"'^[ab]_conv/Conv2D$'", message)
    self.assertIn("'a_conv/Conv2D' (Conv2D): 4", message)
    self.assertIn("'b_conv/Conv2D' (Conv2D): 5", message)
    self.assertIn('only ops of one width', message)

  def test_blacklisted_group_counts_all_channels_alive(self):
    with tf.Graph().as_default():
      x, out = self._two_towers()
      c = layers.conv_bn_relu(out, 2, 1, name='c')
      reg = flop_regularizer.GammaFlopsRegularizer(
          [c.op], gamma_threshold=1e-3, input_boundary=[x.op],
          regularizer_blacklist=['^b_bn/'])
      manager = reg.op_regularizer_manager
      self.assertIsNone(manager.get_regularizer(_op('b_conv/Conv2D')))
      self.assertIsNotNone(manager.get_regularizer(_op('a_conv/Conv2D')))
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        layers.assign(session, 'a_bn/gamma', [0.0, 0.0, 1.0, 1.0])
        layers.assign(session, 'b_bn/gamma', [0.0, 0.0, 0.0, 1.0])
        cost, term = session.run([reg.get_cost(),
                                  reg.get_regularization_term()])
    # a: 2 alive, b: all 4 alive (blacklisted), c sees 2 + 4 inputs.
    self.assertEqual(2 * 16 * (3 * 2 + 3 * 4 + 6 * 2), cost)
    # Terms: a: 3 * 2; b: none; c: 6 * 2 (r_out) + 2 * 2 (r_in of a only).
    self.assertAllClose(2 * 16 * (3 * 2.0 + 0.0 + (6 * 2.0 + 2 * 2.0)), term)

  def test_blacklist_regex_matching_nothing(self):
    with tf.Graph().as_default():
      _, out = self._two_towers()
      with self.assertRaises(errors.InvalidArgumentError) as context:
        _manager([out], regularizer_blacklist=['^missing/'])
    # The original's message; the details and the fix in a note.
    self.assertEqual("Blacklist regex never used: '^missing/'.",
                     str(context.exception))
    (note,) = context.exception.__notes__
    self.assertIn("regularizer_blacklist regex '^missing/' matches no op "
                  'between the boundaries (', note)
    self.assertIn('Fix the regex or remove it.', note)


class ErrorsTest(tf.test.TestCase):

  def test_tensor_as_output_boundary(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv_bn_relu(x, 3, name='a')
      # A bare manager may have no ops (the original's handler tests group
      # slices by hand); a network regularizer of no ops is a mistake.
      self.assertEmpty(_manager([]).ops)
      with self.assertRaises(errors.InvalidArgumentError) as context:
        flop_regularizer.GammaFlopsRegularizer([], gamma_threshold=0.1)
      self.assertIn('Invalid value for argument `output_boundary`. Expected '
                    'a non-empty list of tf.Operation (for example '
                    '`[logits.op]`).', str(context.exception))
      with self.assertRaises(errors.InvalidArgumentError) as context:
        orm.OpRegularizerManager([y], op_handlers.get_gamma_op_handler_dict())
    message = str(context.exception)
    self.assertIn('output_boundary', message)
    self.assertIn('`tensor.op`', message)
    self.assertIn("'a_relu'", message)

  def test_tensor_as_input_boundary(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.conv_bn_relu(x, 3, name='a')
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  'input_boundary.*tensor.op'):
        _manager([y], input_boundary=[x])

  def test_unknown_channels_of_source(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, None])
      gamma = tf.Variable(tf.ones([3]), shape=tf.TensorShape([None]),
                          name='gamma')
      other = _v1.placeholder(tf.float32, [None])
      y, _, _ = _v1.nn.fused_batch_norm(x, gamma, other, other, other,
                                        is_training=False, name='bn')
      self.assertEqual([1, 4, 4, None], y.shape.as_list())
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        orm.OpRegularizerManager([y.op],
                                 op_handlers.get_gamma_op_handler_dict())
    message = str(context.exception)
    self.assertIn("'bn' (FusedBatchNormV3)", message)
    self.assertIn('static channel dimension', message)

  def test_unknown_input_channels_of_conv(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, None])
      kernel = _v1.get_variable('kernel', [3, 3, 2, 3], use_resource=True)
      y = tf.nn.conv2d(x, kernel, 1, 'SAME', name='conv')
      y = layers.batch_norm(y, name='bn')
      reg = flop_regularizer.GammaFlopsRegularizer([y.op], gamma_threshold=1e-3)
      with self.assertRaises(errors.UnsupportedGraphError) as context:
        reg.get_cost()
    message = str(context.exception)
    self.assertIn("'conv' (Conv2D)", message)
    self.assertIn('static channel dimension', message)


class GraphShapesTest(tf.test.TestCase):

  def _check_while_loop(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, name='a')
      _, looped = _v1.while_loop(lambda i, t: i < 3,
                                 lambda i, t: (i + 1, tf.nn.relu(t)),
                                 [tf.constant(0), a])
      b = layers.conv_bn_relu(looped, 2, 1, name='b')
      reg = flop_regularizer.GammaFlopsRegularizer(
          [b.op], gamma_threshold=1e-3, input_boundary=[x.op])
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        cost = session.run(reg.get_cost())
    self.assertEqual(2 * 16 * 9 * 2 * 3 + 2 * 16 * 1 * 3 * 2, cost)

  def test_while_loop_v1_cycle_completes(self):
    was_v2 = tf.compat.v1.control_flow_v2_enabled()
    _v1.disable_control_flow_v2()  # Enter/Merge/NextIteration: a cycle.
    try:
      self._check_while_loop()
    finally:
      if was_v2:
        _v1.enable_control_flow_v2()

  def test_while_loop_v2_completes(self):
    self._check_while_loop()

  def test_long_chain_is_fast(self):
    num_blocks = 200
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 2, 2, 2])
      y = x
      for i in range(num_blocks):
        y = layers.conv_bn_relu(y, 2, 1, name='block%d' % i)
      start = time.time()
      manager = _manager([y], input_boundary=[x.op])
      elapsed = time.time() - start
    self.assertLen(manager.source_ops, num_blocks)
    groups_with_sources = [g for g in manager.op_groups if g.source_op_slices]
    self.assertLen(groups_with_sources, num_blocks)
    self.assertLess(elapsed, 60.0)  # Loose: about 1 s on a slow machine.


class UnknownOpTest(tf.test.TestCase):

  def test_unknown_op_type_groups_and_warns_once(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, name='a')
      y = tf.math.atan(tf.math.atan(a, name='atan1'), name='atan2')
      b = layers.conv_bn_relu(y, 2, 1, name='b')
      with mock.patch.object(op_handlers.logging, 'warning') as warning:
        manager = _manager([b], input_boundary=[x.op])
      group = manager.get_op_group(manager.get_op_slices(_op('atan2'))[0])
    atan_warnings = [c for c in warning.call_args_list if 'Atan' in c[0]]
    self.assertLen(atan_warnings, 1)
    message = atan_warnings[0][0][0] % atan_warnings[0][0][1:]
    self.assertIn('no op handler for op type Atan', message)
    self.assertIn("op_handler_dict['Atan']", message)
    self.assertEqual(['a_bn/FusedBatchNormV3'], _source_names(group))

  def test_registries_are_independent(self):
    first = op_handlers.get_gamma_op_handler_dict()
    second = op_handlers.get_gamma_op_handler_dict()
    first['Atan'] = first['Reshape']
    self.assertNotIn('Atan', second)
    self.assertIsNot(first['Conv2D'], second['Conv2D'])


if __name__ == '__main__':
  tf.test.main()
