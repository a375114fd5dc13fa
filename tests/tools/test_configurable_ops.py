"""ConfigurableOps: TF1 networks built with the widths of a parameterization."""

import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.structure import structure_files
from morph_net.tools import configurable_ops as ops

_v1 = tf.compat.v1
tf_slim = ops.tf_slim
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _kernel_shapes():
  """{variable name: shape} of the weights (not biases) in the graph."""
  return {v.op.name: v.shape.as_list() for v in _v1.global_variables()
          if v.op.name.endswith('weights')}


def _op_names(op_type):
  return sorted(op.name for op in _v1.get_default_graph().get_operations()
                if op.type == op_type)


class WidthsTest(tf.test.TestCase):

  def test_conv_separable_and_fully_connected_get_the_parameterized_widths(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps(parameterization={
          'net/a/Conv2D': 7, 'net/sep/separable_conv2d': 3, 'fc/MatMul': 2})
      x = tf.ones([2, 6, 6, 3])
      with _v1.variable_scope('net'):
        a = decorator.conv2d(x, 16, 3, scope='a')
        sep = decorator.separable_conv2d(a, num_outputs=16, kernel_size=3,
                                         depth_multiplier=2, scope='sep')
        b = decorator.conv2d(sep, num_outputs=5, kernel_size=1, scope='b')
      logits = decorator.fully_connected(tf.reduce_mean(b, [1, 2]), 10,
                                         scope='fc')
      self.assertEqual({
          'net/a/weights': [3, 3, 3, 7],
          'net/sep/depthwise_weights': [3, 3, 7, 2],
          'net/sep/pointwise_weights': [1, 1, 14, 3],
          'net/b/weights': [1, 1, 3, 5],  # Not parameterized: passed through.
          'fc/weights': [5, 2]}, _kernel_shapes())
      self.assertEqual([2, 2], logits.shape.as_list())
      self.assertEqual(
          [('net/a/Conv2D', 7), ('net/sep/separable_conv2d', 3),
           ('net/b/Conv2D', 5), ('fc/MatMul', 2)],
          list(decorator.constructed_ops.items()))
      self.assertEqual(['net/a/Conv2D', 'net/b/Conv2D',
                        'net/sep/separable_conv2d'], _op_names('Conv2D'))

  def test_default_scopes_are_numbered_like_the_layer_functions(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps(
          parameterization={'blk/conv2d/Conv2D': 3, 'blk/conv2d_1/Conv2D': 2},
          function_dict={'conv2d': ops.tf_layers.conv2d})
      x = tf.ones([1, 4, 4, 2])
      with _v1.variable_scope('blk'):
        first = decorator.conv2d(x, filters=8, kernel_size=1)
        second = decorator.conv2d(first, 8, 1)
      self.assertEqual(['blk/conv2d/Conv2D', 'blk/conv2d_1/Conv2D'],
                       _op_names('Conv2D'))
      self.assertEqual(2, second.shape[-1])
      self.assertEqual({'blk/conv2d/kernel': [1, 1, 2, 3],
                        'blk/conv2d_1/kernel': [1, 1, 3, 2]},
                       {v.op.name: v.shape.as_list()
                        for v in _v1.global_variables()
                        if v.op.name.endswith('kernel')})

  def test_get_function_dict_replaces_only_the_overrides(self):
    function_dict = ops.get_function_dict({'concat': tf.stack})
    self.assertIs(tf.stack, function_dict['concat'])
    self.assertIs(tf_slim.layers.conv2d, function_dict['conv2d'])
    self.assertIs(tf.concat, ops.DEFAULT_FUNCTION_DICT['concat'])


class VanishedTest(tf.test.TestCase):

  def test_a_zero_width_vanishes_everything_that_only_depends_on_it(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps(parameterization={'a/Conv2D': 0})
      x = tf.ones([1, 4, 4, 3])
      a = decorator.conv2d(x, 8, 3, scope='a')
      b = decorator.conv2d(a, 8, 3, scope='b')
      pooled = decorator.max_pool2d(b, 2)
      averaged = decorator.avg_pool2d(inputs=pooled, kernel_size=2)
      normalized = decorator.batch_norm(averaged)
      logits = decorator.fully_connected(normalized, 4, scope='fc')
      for output in (a, b, pooled, averaged, normalized, logits):
        self.assertIs(ops.VANISHED, output)
      self.assertTrue(ops.is_vanished(None))
      self.assertFalse(ops.is_vanished(x))
      # Only the zero-width op is recorded; nothing was added to the graph.
      self.assertEqual({'a/Conv2D': 0}, dict(decorator.constructed_ops))
      self.assertEqual([], _op_names('Conv2D') + _op_names('MatMul'))
      self.assertEqual({}, _kernel_shapes())

  def test_residual_add_with_a_vanished_branch_is_the_shortcut(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps(parameterization={'res/b/Conv2D': 0})
      x = tf.constant(np.arange(16, dtype=np.float32).reshape([1, 2, 2, 4]))
      with _v1.variable_scope('res'):
        a = decorator.conv2d(x, 6, 1, scope='a')
        branch = decorator.conv2d(a, 4, 1, scope='b')
      output = x + branch
      self.assertEqual({'res/a/weights': [1, 1, 4, 6]}, _kernel_shapes())
      with self.cached_session():
        self.assertAllEqual(np.arange(16).reshape([1, 2, 2, 4]), output)

  def test_concat_and_add_n_drop_vanished_inputs(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps(
          parameterization={'t1/Conv2D': 0, 't2/Conv2D': 3, 't3/Conv2D': 5})
      x = tf.ones([1, 4, 4, 2])
      towers = [decorator.conv2d(x, 4, 1, scope='t%d' % i) for i in (1, 2, 3)]
      self.assertIs(ops.VANISHED, towers[0])
      concat = decorator.concat(towers, 3)
      self.assertEqual([1, 4, 4, 8], concat.shape.as_list())
      concat = decorator.concat(values=[None, towers[2]], axis=3)
      self.assertEqual([1, 4, 4, 5], concat.shape.as_list())
      total = decorator.add_n([towers[0], tf.constant([1.0, 2.0]), None,
                               tf.constant([3.0, 5.0])])
      self.assertIs(ops.VANISHED, decorator.concat([None, ops.VANISHED], 3))
      self.assertIs(ops.VANISHED, decorator.add_n(inputs=[towers[0]]))
      with self.cached_session():
        self.assertAllEqual([4.0, 7.0], total)


class FallbackRuleTest(tf.test.TestCase):

  def _build(self, fallback_rule):
    decorator = ops.ConfigurableOps(parameterization={'a/Conv2D': 3},
                                    fallback_rule=fallback_rule)
    x = tf.ones([1, 4, 4, 2])
    return decorator, [decorator.conv2d(x, 6, 1, scope='a'),
                       decorator.conv2d(x, 6, 1, scope='b')]

  def test_pass_through_zero_and_strict(self):
    with tf.Graph().as_default():
      decorator, (a, b) = self._build(ops.FallbackRule.pass_through)
      self.assertEqual((3, 6), (a.shape[-1], b.shape[-1]))
    with tf.Graph().as_default():
      decorator, (a, b) = self._build('zero')
      self.assertEqual(3, a.shape[-1])
      self.assertIs(ops.VANISHED, b)
      self.assertEqual({'a/Conv2D': 3, 'b/Conv2D': 0},
                       dict(decorator.constructed_ops))
    with tf.Graph().as_default():
      with self.assertRaises(errors.KeyLookupError) as caught:
        self._build(ops.FallbackRule.strict)
    self.assertIsInstance(caught.exception, KeyError)
    self.assertEqual(
        'op_name "b/Conv2D" not found in parameterization (fallback_rule is '
        'strict). Add it to the parameterization or use the pass_through or '
        'zero fallback rule.', str(caught.exception))

  def test_unknown_fallback_rule(self):
    with self.assertRaisesRegex(
        errors.KeyLookupError,
        r"^Unknown fallback_rule 'lenient'. Use one of \['pass_through', "
        r"'strict', 'zero'\].$"):
      ops.ConfigurableOps(fallback_rule='lenient')
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'Invalid value for argument `fallback_rule`. Expected a FallbackRule '
        r"or one of the strings \['pass_through', 'strict', 'zero'\]. "
        r'Received: fallback_rule=3 \(int\).'):
      ops.ConfigurableOps(fallback_rule=3)


class BadInputTest(tf.test.TestCase):

  def test_bad_parameterizations_name_the_op(self):
    for width, shown in ((-1, '-1 (int)'), (2.5, '2.5 (float)'),
                         (True, 'True (bool)'), ('8', "'8' (str)")):
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          "Bad width for op 'a/Conv2D' in the parameterization: %s. A width "
          'is an integer number of output channels >= 0' % (
              shown.replace('(', r'\(').replace(')', r'\)'))):
        ops.ConfigurableOps(parameterization={'a/Conv2D': width})
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        'A parameterization maps op names to widths, for example '
        r'\{"conv1/Conv2D": 16\}. Received a list.'):
      ops.ConfigurableOps(parameterization=[('a/Conv2D', 3)])
    self.assertEqual({'a/Conv2D': 3}, ops.ConfigurableOps(
        parameterization={'a/Conv2D': np.int64(3)}).parameterization)

  def test_missing_arguments(self):
    with tf.Graph().as_default():
      decorator = ops.ConfigurableOps()
      x = tf.ones([1, 4, 4, 2])
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r'Argument `num_outputs` is required \(as keyword or as positional '
          r'argument 1\).'):
        decorator.conv2d(x, kernel_size=3, scope='a')
      for layer_fn in (decorator.conv2d, decorator.max_pool2d):
        with self.assertRaisesRegex(
            errors.InvalidArgumentError,
            r'Argument `inputs` is required \(as keyword or as positional '
            r'argument 0\).'):
          layer_fn(num_outputs=3, kernel_size=2, scope='b')
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r'ConfigurableOps.concat: missing `values` argument \(the list of '
          r'tensors\).'):
        decorator.concat(axis=3)

  def test_bad_scopes(self):
    with tf.Graph().as_default():
      x = tf.ones([1, 4, 4, 2])
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r"Scope 'a/' of tf_slim\.layers\.layers\.convolution2d ends with "
          r'"/", which makes its op names unpredictable. Drop the trailing '
          r'"/".'):
        ops.ConfigurableOps().conv2d(x, 4, 1, scope='a/')

      def my_conv(inputs, num_outputs, **kwargs):
        return tf_slim.layers.conv2d(inputs, num_outputs, 1, **kwargs)

      decorator = ops.ConfigurableOps(function_dict={'conv2d': my_conv})
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r'No `scope` or `name` given to .*\.my_conv, whose default scope '
          r'ConfigurableOps does not know. Pass scope=\.\.\. to name the op.'):
        decorator.conv2d(x, 4)
      self.assertEqual(4, decorator.conv2d(x, 4, scope='c').shape[-1])

  def test_function_missing_from_the_function_dict(self):
    decorator = ops.ConfigurableOps(function_dict={'conv2d': tf.identity})
    with self.assertRaises(errors.KeyLookupError) as caught:
      decorator.max_pool2d(tf.ones([1, 2, 2, 1]), 2)
    self.assertEqual(
        "Function 'max_pool2d' is not in this ConfigurableOps function_dict "
        "(it has ['conv2d']). Pass function_dict=get_function_dict("
        "{'max_pool2d': ...}) to add it to the defaults.",
        str(caught.exception))

  def test_fully_connected_needs_rank_2(self):
    with tf.Graph().as_default():
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r"ConfigurableOps.fully_connected\(scope='fc'\) needs inputs of "
          r'rank 2, got shape \(1, 4, 4, 2\). Flatten the inputs first.'):
        ops.ConfigurableOps().fully_connected(tf.ones([1, 4, 4, 2]), 3,
                                              scope='fc')

  def test_bad_parameterization_file(self):
    path = os.path.join(self.get_temp_dir(), 'broken.json')
    with open(path, 'w') as f:
      f.write('{"a/Conv2D": 3,')
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        '%s is not a parameterization file: .*Expected JSON \\{op name: '
        'width\\}, as StructureExporter writes it.' % path):
      ops.decorator_from_parameterization_file(path)


class HijackTest(tf.test.TestCase):

  def _module(self):
    """A model-building module that calls its layers through aliases."""
    module = types.ModuleType('tower_lib')
    module.conv2d = tf_slim.layers.conv2d
    module.concat = tf.concat
    module.relu = tf.nn.relu  # Not a layer function: never replaced.

    def build(inputs):
      towers = [module.conv2d(inputs, 4, 1, scope='t%d' % i) for i in (1, 2)]
      return module.concat(towers, 3)

    module.build = build
    return module

  def test_hijack_and_recover(self):
    module = self._module()
    decorator = ops.ConfigurableOps(
        parameterization={'t1/Conv2D': 0, 't2/Conv2D': 3})
    originals = ops.hijack_module_functions(decorator, module)
    self.assertEqual({'conv2d': tf_slim.layers.conv2d, 'concat': tf.concat},
                     originals)
    with tf.Graph().as_default():
      output = module.build(tf.ones([1, 4, 4, 2]))
      self.assertEqual([1, 4, 4, 3], output.shape.as_list())
      self.assertEqual({'t2/weights': [1, 1, 2, 3]}, _kernel_shapes())
    # arg_scope reaches the hijacked functions.
    with tf.Graph().as_default():
      with tf_slim.arg_scope([module.conv2d], activation_fn=None):
        module.build(tf.ones([1, 4, 4, 2]))
      self.assertEqual([], _op_names('Relu'))
    ops.recover_module_functions(originals, module)
    self.assertIs(tf_slim.layers.conv2d, module.conv2d)
    self.assertIs(tf.concat, module.concat)
    self.assertIs(tf.nn.relu, module.relu)
    with tf.Graph().as_default():
      self.assertEqual(8, module.build(tf.ones([1, 4, 4, 2])).shape[-1])

  def test_decorator_from_parameterization_file(self):
    path = os.path.join(self.get_temp_dir(), 'learned_structure', 'alive_7')
    structure_files.write_structure({'t1/Conv2D': 2, 't2/Conv2D': 0}, path)
    decorator = ops.decorator_from_parameterization_file(
        path, fallback_rule='strict')
    self.assertEqual({'t1/Conv2D': 2, 't2/Conv2D': 0},
                     decorator.parameterization)
    module = self._module()
    originals = ops.hijack_module_functions(decorator, module)
    with tf.Graph().as_default():
      self.assertEqual(2, module.build(tf.ones([1, 4, 4, 2])).shape[-1])
    ops.recover_module_functions(originals, module)


class MissingDependencyTest(tf.test.TestCase):

  def test_import_without_tf_slim_or_tf_keras(self):
    script = textwrap.dedent("""
        import sys
        from morph_net import errors
        sys.modules['tf_slim'] = None  # Makes `import tf_slim` fail.
        try:
          from morph_net.tools import configurable_ops
        except errors.MissingDependencyError as e:
          print('SLIM:', e)
        del sys.modules['tf_slim']
        import morph_net.tools
        del sys.modules['morph_net.tools._configurable_keras_v1']
        del morph_net.tools._configurable_keras_v1
        sys.modules['tf_keras.api._v1.keras.layers'] = None
        try:
          from morph_net.tools import configurable_ops
        except errors.MissingDependencyError as e:
          print('KERAS:', e)
        """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
               PYTHONPATH=os.pathsep.join([_ROOT] + sys.path))
    result = subprocess.run([sys.executable, '-c', script], env=env, cwd=_ROOT,
                            capture_output=True, text=True, timeout=300,
                            check=False)
    self.assertEqual(0, result.returncode, result.stderr[-3000:])
    self.assertRegex(
        result.stdout, r'SLIM: The TF1 extras need tf_slim, which could not be '
        r'imported: .*\. Install it with: pip install "morph-net\[slim\]"\.')
    self.assertRegex(
        result.stdout, r'KERAS: The TF1 Keras layers of configurable_ops need '
        r'tf_keras, which could not be imported: .*\. Install it with: pip '
        r'install "morph-net\[slim\]"\.')


if __name__ == '__main__':
  tf.test.main()
