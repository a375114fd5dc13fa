"""configurable_ops' tf_keras layers: Keras 2 networks built in a TF1 graph."""

import json
import os

import numpy as np
import tensorflow as tf
import tf_keras

from morph_net import errors
from morph_net.tools import configurable_ops as ops
from morph_net.tools import test_module

_v1 = tf.compat.v1


def _kernel_shapes():
  """{variable name: shape} of the kernels in the default graph."""
  return {v.op.name: v.shape.as_list() for v in _v1.global_variables()
          if 'kernel' in v.op.name}


class _HijackedModule(object):
  """Hijacks `module` with `hijack_keras_module` for a `with` block."""

  def __init__(self, module, parameterization, **kwargs):
    self._module = module
    self._args = (parameterization, module)
    self._kwargs = kwargs

  def __enter__(self):
    constructed_ops, self._originals = ops.hijack_keras_module(
        *self._args, **self._kwargs)
    return constructed_ops

  def __exit__(self, *unused_exc_info):
    ops.recover_module_functions(self._originals, self._module)


class ConfigurableLayersTest(tf.test.TestCase):

  def test_layers_get_the_parameterized_widths(self):
    with tf.Graph().as_default():
      x = tf.ones([2, 6, 6, 3])
      conv = ops.ConfigurableConv2D(parameterization={'c/Conv2D': 4},
                                    filters=9, kernel_size=3, name='c')(x)
      sep = ops.ConfigurableSeparableConv2D(
          parameterization={'s/separable_conv2d': 5}, filters=9,
          kernel_size=3, name='s')(conv)
      # Rank 4: the Dense op is a Tensordot.
      dense4 = ops.ConfigurableDense(
          parameterization={'d4/Tensordot/MatMul': 2}, units=9,
          name='d4')(sep)
      # Rank 2: the op is a MatMul, the name the structure exporter writes.
      dense2 = ops.ConfigurableDense(parameterization={'d2/MatMul': 3},
                                     units=9, name='d2')(
                                         tf.reduce_mean(sep, [1, 2]))
      unnamed = ops.ConfigurableConv2D(filters=6, kernel_size=1)(x)
      self.assertEqual([[2, 4, 4, 4], [2, 2, 2, 5], [2, 2, 2, 2], [2, 3],
                        [2, 6, 6, 6]],
                       [t.shape.as_list() for t in (conv, sep, dense4, dense2,
                                                    unnamed)])
      self.assertEqual({
          'c/kernel': [3, 3, 3, 4], 's/depthwise_kernel': [3, 3, 4, 1],
          's/pointwise_kernel': [1, 1, 4, 5], 'd4/kernel': [5, 2],
          'd2/kernel': [5, 3], 'configurable_conv2d/kernel': [1, 1, 3, 6]},
                       _kernel_shapes())
      self.assertIn('configurable_conv2d/ConfigurableConv2D',
                    [op.name for op in _v1.get_default_graph().get_operations()])

  def test_a_zero_width_layer_vanishes(self):
    with tf.Graph().as_default():
      x = tf.ones([1, 4, 4, 2])
      constructed_ops = {}
      conv = ops.ConfigurableConv2D(
          parameterization={'z/ConfigurableConv2D': 0},
          constructed_ops=constructed_ops, filters=3, kernel_size=1,
          name='z')
      self.assertIs(ops.VANISHED, conv(x))
      self.assertTrue(conv.is_null_op)
      self.assertEqual({'z/ConfigurableConv2D': 0}, constructed_ops)
      self.assertIs(ops.VANISHED, ops.ConfigurableDense(units=3)(None))

  def test_pass_through_wrapper(self):
    with tf.Graph().as_default():
      x = tf.constant(np.arange(8, dtype=np.float32).reshape([1, 2, 2, 2]))
      add = ops.PassThroughKerasLayerWrapper(tf_keras.layers.Add)
      self.assertIs(ops.VANISHED, add([None, ops.VANISHED]))
      self.assertIs(x, add([ops.VANISHED, x]))
      self.assertIsNone(add.keras_layer_instance)  # Nothing was created.
      total = add([x, ops.VANISHED, 2 * x])
      activation = ops.PassThroughKerasLayerWrapper(
          tf_keras.layers.Activation, 'relu')
      self.assertIs(ops.VANISHED, activation(ops.VANISHED))
      negated = activation(-x)
      with self.cached_session():
        self.assertAllEqual(3 * np.arange(8).reshape([1, 2, 2, 2]), total)
        self.assertAllEqual(np.zeros([1, 2, 2, 2]), negated)


class HijackKerasModuleTest(tf.test.TestCase):

  def test_vanished_branch_is_dropped_from_add_and_concat(self):
    with tf.Graph().as_default():
      with _HijackedModule(test_module.layers,
                           {'conv1/Conv2D': 0, 'conv2/Conv2D': 2},
                           keep_first_channel_alive=False) as constructed:
        output, branch1, branch2 = test_module.build_two_branch_model(
            tf.ones([1, 6, 6, 3]))
      self.assertIs(ops.VANISHED, branch1)
      # concat([branch2 (the add of one input), branch2]).
      self.assertEqual([1, 4, 4, 4], output.shape.as_list())
      self.assertEqual([1, 4, 4, 2], branch2.shape.as_list())
      self.assertEqual({'conv1/Conv2D': 0, 'conv2/Conv2D': 2},
                       dict(constructed))
    self.assertIs(tf_keras.layers.Conv2D, test_module.layers.Conv2D)
    self.assertIs(tf_keras.layers.Add, test_module.layers.Add)

  def test_all_layer_types_from_a_file_with_prefix_removal(self):
    path = os.path.join(self.get_temp_dir(), 'alive')
    with open(path, 'w') as f:
      json.dump({'model/conv/Conv2D': 0, 'model/sep_conv/separable_conv2d': 4,
                 'model/dense/MatMul': 3}, f)
    with tf.Graph().as_default():
      with _HijackedModule(test_module, path,
                           remove_common_prefix=True) as constructed:
        output = test_module.build_model_with_all_configurable_types(
            tf.ones([1, 8, 8, 3]))
      self.assertEqual([1, 3], output.shape.as_list())
      # keep_first_channel_alive turned the conv's 0 into 1.
      self.assertEqual({
          'conv/kernel': [3, 3, 3, 1], 'sep_conv/depthwise_kernel': [3, 3, 1, 1],
          'sep_conv/pointwise_kernel': [1, 1, 1, 4], 'dense/kernel': [4, 3]},
                       _kernel_shapes())
      self.assertEqual({'conv/Conv2D': 1, 'sep_conv/separable_conv2d': 4,
                        'dense/MatMul': 3}, dict(constructed))
    self.assertIs(tf_keras.layers.Dense, test_module.Dense)

  def test_keras_lib_and_layers_lib_are_hijacked_too(self):
    for module, build in (
        (test_module.keras.layers,
         test_module.build_simple_keras_model_from_keras_lib),
        (test_module.layers, test_module.build_simple_keras_model)):
      with tf.Graph().as_default():
        with _HijackedModule(module, {'conv/Conv2D': 2}):
          output = build(tf.ones([1, 5, 5, 3]))
        self.assertEqual([1, 3, 3, 2], output.shape.as_list())
      self.assertIs(tf_keras.layers.Conv2D, module.Conv2D)


class BadInputTest(tf.test.TestCase):

  def test_positional_arguments(self):
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'ConfigurableConv2D takes keyword arguments only; got the positional '
        r'argument 8. Pass the layer arguments \(filters=..., '
        r'kernel_size=...\) by name.'):
      ops.ConfigurableConv2D(8)

  def test_ambiguous_and_missing_op_names(self):
    with tf.Graph().as_default():
      x = tf.ones([1, 4, 4, 2])
      with self.assertRaises(errors.KeyLookupError) as caught:
        ops.ConfigurableConv2D(
            parameterization={'c/Conv2D': 1, 'c/ConfigurableConv2D': 2},
            filters=3, kernel_size=1, name='c')(x)
      self.assertEqual(
          "Layer 'c' (ConfigurableConv2D) matches several op names of the "
          "parameterization: ['c/Conv2D', 'c/ConfigurableConv2D']. Keep only "
          'one of them.', str(caught.exception))
      with self.assertRaises(errors.KeyLookupError) as caught:
        ops.ConfigurableDense(parameterization={'other/MatMul': 1},
                              is_strict=True, units=3, name='d')(
                                  tf.ones([1, 2]))
      self.assertEqual(
          "Layer 'd' (ConfigurableDense): none of the op names "
          "['d/Tensordot/MatMul', 'd/MatMul'] is in the parameterization "
          '(is_strict=True). Add one of them or pass is_strict=False.',
          str(caught.exception))

  def test_hijack_keras_module_bad_arguments(self):
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'Invalid value for argument `parameterization_or_file`. Expected a '
        r'dict \{op name: width\} or the path of a JSON file. Received: '
        r'list.'):
      ops.hijack_keras_module([('conv/Conv2D', 1)], test_module)
    with self.assertRaisesRegex(errors.InvalidArgumentError,
                                "Bad width for op 'conv/Conv2D'"):
      ops.hijack_keras_module({'conv/Conv2D': -2}, test_module)
    with self.assertRaisesRegex(errors.KeyLookupError,
                                "Unknown fallback_rule 'strictest'"):
      ops.hijack_keras_module({}, test_module, fallback_rule='strictest')
    self.assertIs(tf_keras.layers.Conv2D, test_module.Conv2D)


if __name__ == '__main__':
  tf.test.main()
