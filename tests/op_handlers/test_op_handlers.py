"""Op handlers: registry contents and how each handler groups channels."""

import tensorflow as tf

from morph_net.framework import op_handler_decorator
from morph_net.framework import op_regularizer_manager as orm
from morph_net.op_handlers import batch_norm_source_op_handler
from morph_net.op_handlers import concat_op_handler
from morph_net.op_handlers import conv_source_op_handler
from morph_net.op_handlers import depthwise_convolution_op_handler
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import leaf_op_handler
from morph_net.op_handlers import matmul_source_op_handler
from morph_net.op_handlers import op_handlers
from morph_net.op_handlers import output_non_passthrough_op_handler
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


def _op(name):
  return _v1.get_default_graph().get_operation_by_name(name)


def _same_group(manager, op_a, op_b, index_a=0, index_b=0):
  group_a = manager.get_op_group(manager.get_op_slices(op_a)[index_a])
  group_b = manager.get_op_group(manager.get_op_slices(op_b)[index_b])
  return group_a is group_b


class RegistryTest(tf.test.TestCase):

  def test_gamma_registry(self):
    handlers = op_handlers.get_gamma_op_handler_dict()
    self.assertIsInstance(handlers['FusedBatchNormV3'],
                          batch_norm_source_op_handler.BatchNormSourceOpHandler)
    self.assertIsInstance(handlers['Mul'],
                          batch_norm_source_op_handler.BatchNormSourceOpHandler)
    self.assertIsInstance(
        handlers['Conv2D'],
        output_non_passthrough_op_handler.OutputNonPassthroughOpHandler)
    self.assertNotIsInstance(handlers['Conv2D'],
                             conv_source_op_handler.ConvSourceOpHandler)
    self.assertIsInstance(handlers['ConcatV2'],
                          concat_op_handler.ConcatOpHandler)
    self.assertIsInstance(
        handlers['DepthwiseConv2dNative'],
        depthwise_convolution_op_handler.DepthwiseConvolutionOpHandler)
    self.assertIsInstance(handlers['Reshape'], leaf_op_handler.LeafOpHandler)
    self.assertIsInstance(handlers['NoSuchOpType'],
                          grouping_op_handler.GroupingOpHandler)
    self.assertFalse(handlers['Relu'].is_source_op)
    self.assertTrue(handlers['Relu'].is_passthrough)
    self.assertFalse(handlers['Reshape'].is_passthrough)

  def test_group_lasso_registry(self):
    handlers = op_handlers.get_group_lasso_op_handler_dict()
    self.assertIsInstance(handlers['Conv2D'],
                          conv_source_op_handler.ConvSourceOpHandler)
    self.assertIsInstance(handlers['Conv3D'],
                          conv_source_op_handler.ConvSourceOpHandler)
    self.assertIsInstance(handlers['MatMul'],
                          matmul_source_op_handler.MatMulSourceOpHandler)
    self.assertTrue(handlers['Conv2DBackpropInput'].is_source_op)
    self.assertFalse(handlers['FusedBatchNormV3'].is_source_op)

  def test_keras_unary_ops_and_activations_are_registered(self):
    # Every op type a Keras 3 unary elementwise op or activation lowers to
    # has a handler: none falls to the default (with a warning), except
    # Atan (`ops.arctan`), which the tests keep as their example of an
    # unregistered op type. Sparsemax (a cumulative sum over the channels)
    # is not called.
    import keras  # pylint: disable=g-import-not-at-top
    from keras.src import ops as keras_ops  # pylint: disable=g-import-not-at-top
    from morph_net.surgery import op_rules  # pylint: disable=g-import-not-at-top
    calls = {'gelu_exact': lambda x: keras.activations.gelu(
        x, approximate=False)}
    for module, names in op_rules.UNARY_OPS.items():
      functions = {name.replace('_', '').lower(): value for name, value in
                   vars(getattr(keras_ops, module)).items()
                   if callable(value) and not isinstance(value, type)}
      for name in names:
        function = functions.get(name.lower())
        if function is None:
          continue  # Not defined in this Keras version.
        if name == 'Clip':
          calls[name] = lambda x, f=function: f(x, 0.0, 1.0)
        elif name == 'Cast':
          calls[name] = lambda x, f=function: f(x, 'float16')
        else:
          calls[name] = function
    for name in ('celu', 'elu', 'gelu', 'hard_sigmoid', 'hard_silu',
                 'leaky_relu', 'linear', 'log_sigmoid', 'mish', 'relu',
                 'relu6', 'selu', 'sigmoid', 'silu', 'softplus', 'softsign',
                 'tanh'):
      calls['activations.' + name] = getattr(keras.activations, name)
    handlers = op_handlers.get_group_lasso_op_handler_dict()
    unregistered = {}
    for name, call in calls.items():
      graph = tf.Graph()
      with graph.as_default():
        call(_v1.placeholder(tf.float32, (2, 5, 8)))
      for op in graph.get_operations():
        if op.type not in dict.keys(handlers):
          unregistered.setdefault(op.type, []).append(name)
    self.assertEqual(unregistered, {'Atan': ['Arctan']})
    self.assertGreaterEqual(len(calls), 60)
    for op_type in ('Erfc', 'Expm1', 'Tan', 'IsNan'):
      self.assertIsInstance(handlers[op_type],
                            grouping_op_handler.GroupingOpHandler)


class GroupingBehaviourTest(tf.test.TestCase):

  def _manager(self, outputs, handlers=None):
    return orm.OpRegularizerManager(
        [t.op for t in outputs],
        handlers or op_handlers.get_gamma_op_handler_dict())

  def test_flattening_reshape_repeats_the_channel_group(self):
    # Flatten of 4x4 positions x 4 channels: 16 slices of the 4 channels,
    # each in the conv's group (was a leaf before the engine read Flatten).
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 4, 1, name='a')
      flat = tf.reshape(a, [1, 64], name='flat')
      manager = self._manager([flat])
      slices = manager.get_op_slices(_op('flat'))
      self.assertEqual([4] * 16, [s.slice.size for s in slices])
      for index in (0, 7, 15):
        self.assertTrue(
            _same_group(manager, _op('a_relu'), _op('flat'), 0, index))

  def test_pooling_and_padding_group_first_input(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 4, 1, name='a')
      pooled = tf.nn.max_pool2d(a, 2, 2, 'VALID', name='pool')
      padded = tf.pad(pooled, [[0, 0], [1, 1], [1, 1], [0, 0]], name='pad')
      mean = tf.reduce_mean(padded, axis=[1, 2], name='mean')
      manager = self._manager([mean])
      for name in ('pool', 'pad', 'mean'):
        self.assertTrue(_same_group(manager, _op('a_relu'), _op(name)), name)

  def test_reduction_over_channels_is_not_grouped(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 4])
      a = layers.conv_bn_relu(x, 4, 1, name='a')
      summed = tf.reduce_sum(a, axis=3, keepdims=True, name='sum')
      manager = self._manager([summed])
      self.assertFalse(_same_group(manager, _op('a_relu'), _op('sum')))

  def test_concat_along_batch_groups_like_elementwise(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, 1, name='a')
      b = layers.conv_bn_relu(x, 3, 1, name='b')
      concat = tf.concat([a, b], axis=0, name='concat')
      manager = self._manager([concat])
      self.assertLen(manager.get_op_slices(_op('concat')), 1)
      self.assertTrue(_same_group(manager, _op('a_relu'), _op('b_relu')))

  def test_depth_to_space(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 8, 1, name='a')
      d2s = tf.nn.depth_to_space(a, 2, name='d2s')  # 8 -> 2 channels.
      manager = self._manager([d2s])
      # Output channel c gathers input channels k * 2 + c for k in 0..3.
      bn = _op('a_bn/FusedBatchNormV3')
      self.assertLen(manager.get_op_slices(_op('d2s')), 1)
      self.assertLen(manager.get_op_slices(bn), 4)
      for k in range(4):
        self.assertTrue(_same_group(manager, bn, _op('d2s'), index_a=k))

  def test_transpose_starts_a_new_channel_space(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 4])
      a = layers.conv_bn_relu(x, 4, 1, name='a')
      t = tf.transpose(a, [0, 3, 1, 2], name='transpose')
      manager = self._manager([t])
      self.assertFalse(_same_group(manager, _op('a_relu'), _op('transpose')))

  def test_batch_norm_handler_sources(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.batch_norm(x, name='bn')
      z = layers.batch_norm(y, name='no_scale', scale=False)
      handler = batch_norm_source_op_handler.BatchNormSourceOpHandler(0.1)
      self.assertTrue(handler.is_source(_op('bn/FusedBatchNormV3')))
      self.assertFalse(handler.is_source(_op('no_scale/FusedBatchNormV3')))
      self.assertIsNotNone(batch_norm_source_op_handler.get_gamma(
          _op('bn/FusedBatchNormV3')))
      self.assertIsNone(batch_norm_source_op_handler.get_gamma(z.op))
      plain = tf.multiply(x, 2.0, name='plain_mul')
      self.assertFalse(handler.is_source(plain.op))

  def test_decorator_delegates(self):
    handler = batch_norm_source_op_handler.BatchNormSourceOpHandler(0.1)
    decorated = op_handler_decorator.OpHandlerDecorator(
        handler, op_handler_decorator.ScalingRegularizer, {'scale': 3.0})
    self.assertTrue(decorated.is_source_op)
    self.assertTrue(decorated.is_passthrough)
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      y = layers.batch_norm(x, name='bn')
      handlers = op_handlers.get_gamma_op_handler_dict(0.1)
      handlers['FusedBatchNormV3'] = decorated
      manager = orm.OpRegularizerManager([y.op], handlers)
      regularizer = manager.get_regularizer(y.op)
      self.assertIsInstance(regularizer,
                            op_handler_decorator.ScalingRegularizer)
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        layers.assign(session, 'bn/gamma', [0.5, -2.0])
        self.assertAllClose([1.5, 6.0],
                            session.run(regularizer.regularization_vector))


if __name__ == '__main__':
  tf.test.main()
