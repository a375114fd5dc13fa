"""A TF1 graph and the trace of the same Keras 3 model regularize alike.

TF1 batch norm is FusedBatchNormV3; Keras 3 batch norm traces to
Mul(x, Mul(Rsqrt(variance + eps), gamma)). Both must give the same cost,
regularization term and groups. tf_keras (TF_USE_LEGACY_KERAS=1) traces batch
norm to FusedBatchNormV3 again; it runs in a subprocess because the variable
must be set before TensorFlow is imported.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import keras_models
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1

_GAMMAS = {'a_bn': [1.0, 0.0, 0.0, 0.5], 'b_bn': [0.25, 0.0, 2.0, 0.0],
           'c_bn': [1.0, 0.0, 1.0, 0.0, 3.0]}
_BRANCH_GAMMAS = {'a_bn': [0.0, 1.0], 'b_bn': [1.0, 0.5, 0.0],
                  'd_bn': [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0]}


def _tf1_residual(x):
  a = layers.conv_bn_relu(x, 4, 3, 2, name='a')
  b = layers.conv_bn_relu(a, 4, 3, 1, name='b')
  return layers.conv_bn_relu(tf.add(a, b), 5, 1, 1, name='c')


def _tf1_branches(x):
  a = layers.conv_bn_relu(x, 2, 1, 1, name='a')
  b = layers.conv_bn_relu(x, 3, 3, 1, name='b')
  d = layers.depthwise_conv2d(tf.concat([a, b], 3), 3, depth_multiplier=2,
                              name='d_depthwise')
  d = tf.nn.relu(layers.batch_norm(d, name='d_bn'))
  return layers.dense(tf.reduce_mean(d, [1, 2]), 4, name='logits')


def _conv_groups(manager, layer_names):
  """{layer: (group size, source count)} of each layer's conv-like op."""
  result = {}
  for op in manager.ops:
    if op.type not in ('Conv2D', 'DepthwiseConv2dNative', 'MatMul'):
      continue
    layer = [n for n in layer_names if n in op.name.split('/')[-2]]
    if not layer:
      continue
    groups = [manager.get_op_group(s) for s in manager.get_op_slices(op)]
    result[layer[0]] = [(g.size, len(g.source_op_slices)) for g in groups]
  return result


class KerasParityTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    keras.backend.clear_session()

  def _tf1(self, build, regularizer_class, gammas, names, **kwargs):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 8, 8, 3])
      y = build(x)
      reg = regularizer_class([y.op], input_boundary=[x.op], **kwargs)
      groups = _conv_groups(reg.op_regularizer_manager, names)
      self.assertEqual(
          {'FusedBatchNormV3'},
          {op.type for op in reg.op_regularizer_manager.source_ops})
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        before = session.run([reg.get_cost(), reg.get_regularization_term()])
        for name, value in gammas.items():
          layers.assign(session, name + '/gamma', value)
        after = session.run([reg.get_cost(), reg.get_regularization_term()])
    return before, after, groups

  def _keras(self, model, regularizer_class, gammas, names, **kwargs):
    fn = keras_models.trace(model)
    with fn.graph.as_default():
      reg = regularizer_class(keras_models.output_ops(fn), **kwargs)
      fetches = [reg.get_cost(), reg.get_regularization_term()]
    groups = _conv_groups(reg.op_regularizer_manager, names)
    self.assertEqual({'Mul'},
                     {op.type for op in reg.op_regularizer_manager.source_ops})
    before = keras_models.evaluate(fn, fetches)
    for name, value in gammas.items():
      model.get_layer(name).gamma.assign(value)
    after = keras_models.evaluate(fn, fetches)
    return before, after, groups

  def _check_parity(self, tf1_build, keras_model, gammas, names,
                    regularizer_class=flop_regularizer.GammaFlopsRegularizer):
    tf1 = self._tf1(tf1_build, regularizer_class, gammas, names,
                    gamma_threshold=1e-3)
    traced = self._keras(keras_model, regularizer_class, gammas, names,
                         gamma_threshold=1e-3)
    self.assertAllClose(tf1[0], traced[0])
    self.assertAllClose(tf1[1], traced[1])
    self.assertEqual(tf1[2], traced[2])
    return traced

  def test_residual_flops(self):
    (cost, term), (dead_cost, _), groups = self._check_parity(
        _tf1_residual, keras_models.residual_model(), _GAMMAS,
        ['a_conv', 'b_conv', 'c_conv'])
    c_a, c_b, c_c = 2 * 16 * 9, 2 * 16 * 9, 2 * 16 * 1
    self.assertAllClose(c_a * 3 * 4 + c_b * 4 * 4 + c_c * 4 * 5, cost)
    self.assertAllClose(c_a * (3 * 4) + c_b * (4 * 4 + 4 * 4) +
                        c_c * (4 * 5 + 5 * 4), term)
    # max(a, b) = [1, 0, 2, 0.5]: 3 alive; c: 3 alive.
    self.assertAllClose(c_a * 3 * 3 + c_b * 3 * 3 + c_c * 3 * 3, dead_cost)
    self.assertEqual({'a_conv': [(4, 2)], 'b_conv': [(4, 2)],
                      'c_conv': [(5, 1)]}, groups)

  def test_residual_model_size(self):
    (cost, _), (dead_cost, _), _ = self._check_parity(
        _tf1_residual, keras_models.residual_model(), _GAMMAS,
        ['a_conv', 'b_conv', 'c_conv'],
        model_size_regularizer.GammaModelSizeRegularizer)
    self.assertAllClose(9 * 3 * 4 + 9 * 4 * 4 + 1 * 4 * 5, cost)
    self.assertAllClose(9 * 3 * 3 + 9 * 3 * 3 + 1 * 3 * 3, dead_cost)

  def test_branches_flops(self):
    (cost, _), (dead_cost, _), groups = self._check_parity(
        _tf1_branches, keras_models.branch_model(), _BRANCH_GAMMAS,
        ['a_conv', 'b_conv', 'd_depthwise', 'logits'])
    self.assertAllClose(2 * 64 * 1 * 3 * 2 + 2 * 64 * 9 * 3 * 3 +
                        2 * 64 * 9 * 10 + 2 * 10 * 4, cost)
    # Concat channel i groups a/b channel i with depthwise outputs 2i, 2i+1:
    # max over [a0, d0, d1] = 1, [a1, d2, d3] = 1, [b0, d4, d5] = 2,
    # [b1, d6, d7] = 1, [b2, d8, d9] = 0: a keeps 2, b keeps 2, d keeps 8.
    self.assertAllClose(2 * 64 * 1 * 3 * 2 + 2 * 64 * 9 * 3 * 2 +
                        2 * 64 * 9 * 8 + 2 * 8 * 4, dead_cost)
    self.assertEqual(
        {'a_conv': [(1, 3)] * 2, 'b_conv': [(1, 3)] * 3,
         'd_depthwise': [(1, 3)] * 10, 'logits': [(4, 0)]}, groups)


class LegacyKerasTest(tf.test.TestCase):

  def test_tf_keras_batch_norm_is_fused(self):
    script = textwrap.dedent('''
        import os
        os.environ['TF_USE_LEGACY_KERAS'] = '1'
        import tensorflow as tf
        import tf_keras
        from morph_net.network_regularizers import flop_regularizer
        inputs = tf_keras.Input((8, 8, 3), batch_size=1)
        x = inputs
        for name, filters, strides in (('a', 4, 2), ('b', 5, 1)):
          x = tf_keras.layers.Conv2D(filters, 3, strides, padding='same',
                                     use_bias=False, name=name + '_conv')(x)
          x = tf_keras.layers.BatchNormalization(name=name + '_bn')(x)
          x = tf_keras.layers.ReLU()(x)
        model = tf_keras.Model(inputs, x)
        fn = tf.compat.v1.wrap_function(lambda t: model(t, training=False),
                                        [tf.TensorSpec([1, 8, 8, 3])])
        with fn.graph.as_default():
          reg = flop_regularizer.GammaFlopsRegularizer(
              [fn.graph.outputs[0].op], gamma_threshold=1e-3)
          cost = reg.get_cost()
        sources = reg.op_regularizer_manager.source_ops
        model.get_layer('a_bn').gamma.assign([1.0, 0.0, 0.0, 1.0])
        dead_cost = fn.prune(feeds=[], fetches=cost)()
        print('SOURCES', len(sources), sorted({op.type for op in sources}))
        print('COST', int(dead_cost.numpy()))
        ''')
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
    result = subprocess.run([sys.executable, '-c', script], env=env,
                            capture_output=True, text=True, timeout=300,
                            check=False)
    self.assertEqual(0, result.returncode, result.stderr[-3000:])
    self.assertIn("SOURCES 2 ['FusedBatchNormV3']", result.stdout)
    self.assertIn('COST %d' % (2 * 16 * 9 * 3 * 2 + 2 * 16 * 9 * 2 * 5),
                  result.stdout)


if __name__ == '__main__':
  tf.test.main()
