"""StructureExporter: alive counts of convs and matmuls, saved as JSON."""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import tf1_layers as layers
from morph_net.tools import structure_exporter

_v1 = tf.compat.v1


class StructureExporterTest(tf.test.TestCase):

  def _build(self, scope='net'):
    """conv (4) -> relu -> conv (3) -> mean -> dense (2), under `scope`."""
    x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
    with _v1.variable_scope(scope):
      a = layers.conv2d(x, 4, 3, name='a')
      b = layers.conv2d(tf.nn.relu(a), 3, 1, name='b')
      pooled = tf.reduce_mean(tf.nn.relu(b), axis=[1, 2])
      logits = layers.dense(pooled, 2, name='fc')
    return flop_regularizer.GroupLassoFlopsRegularizer(
        [logits.op], threshold=1e-3, input_boundary=[x.op])

  def _alive_values(self, exporter, scope='net'):
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      kernel_a = layers.get_variable(scope + '/a/kernel')
      kernel_fc = layers.get_variable(scope + '/fc/kernel')
      session.run(kernel_a.assign(
          kernel_a * np.array([1.0, 0.0, 0.0, 1.0], np.float32)))
      session.run(kernel_fc.assign(
          kernel_fc * np.array([0.0, 1.0], np.float32)))
      return session.run(exporter.tensors)

  def test_tensors_and_alive_counts(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager)
      self.assertEqual(['net/a/Conv2D', 'net/b/Conv2D', 'net/fc/MatMul'],
                       sorted(exporter.tensors))
      with self.assertRaisesRegex(RuntimeError, 'populate_tensor_values'):
        exporter.get_alive_counts()
      exporter.populate_tensor_values(self._alive_values(exporter))
    self.assertEqual({'net/a/Conv2D': 2, 'net/b/Conv2D': 3,
                      'net/fc/MatMul': 1}, exporter.get_alive_counts())

  def test_remove_common_prefix(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager, remove_common_prefix=True)
      self.assertEqual(['a/Conv2D', 'b/Conv2D', 'fc/MatMul'],
                       sorted(exporter.tensors))
      exporter.populate_tensor_values(self._alive_values(exporter))
    self.assertEqual({'a/Conv2D': 2, 'b/Conv2D': 3, 'fc/MatMul': 1},
                     exporter.get_alive_counts())

  def test_remove_common_prefix_fn(self):
    remove = structure_exporter.get_remove_common_prefix_fn(
        ['model/block1/conv/Conv2D', 'model/block2/conv/Conv2D'])
    self.assertEqual('block1/conv/Conv2D', remove('model/block1/conv/Conv2D'))
    # The last component is always kept.
    remove = structure_exporter.get_remove_common_prefix_fn(
        ['model/conv', 'model/conv/Conv2D'])
    self.assertEqual('conv', remove('model/conv'))
    self.assertEqual('conv/Conv2D', remove('model/conv/Conv2D'))
    remove = structure_exporter.get_remove_common_prefix_fn(['model/conv'])
    self.assertEqual('model/conv', remove('model/conv'))

  def test_populate_with_missing_values(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager)
    with self.assertRaisesRegex(ValueError, 'net/fc/MatMul'):
      exporter.populate_tensor_values(
          {'net/a/Conv2D': [True], 'net/b/Conv2D': [True]})

  def test_create_file_and_save_alive_counts(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager, remove_common_prefix=True)
      exporter.populate_tensor_values(self._alive_values(exporter))
    base_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, base_dir)
    path = exporter.create_file_and_save_alive_counts(base_dir, 7)
    self.assertEqual(os.path.join(base_dir, 'learned_structure', 'alive_7'),
                     path)
    expected = {'a/Conv2D': 2, 'b/Conv2D': 3, 'fc/MatMul': 1}
    expected_text = json.dumps(expected, sort_keys=True, indent=2)
    for name in ('alive_7', 'alive'):
      with open(os.path.join(base_dir, 'learned_structure', name)) as f:
        text = f.read()
      self.assertEqual(expected_text, text)
      self.assertEqual(expected, json.loads(text))
    self.assertEqual(['alive', 'alive_7'], sorted(
        os.listdir(os.path.join(base_dir, 'learned_structure'))))
    # The latest copy follows the newest step.
    exporter.populate_tensor_values(
        {'a/Conv2D': [True] * 4, 'b/Conv2D': [True] * 3,
         'fc/MatMul': [True, True]})
    exporter.create_file_and_save_alive_counts(base_dir, 8)
    with open(os.path.join(base_dir, 'learned_structure', 'alive')) as f:
      self.assertEqual({'a/Conv2D': 4, 'b/Conv2D': 3, 'fc/MatMul': 2},
                       json.load(f))

  def test_save_alive_counts(self):
    exporter_text = []

    class _File(object):

      def write(self, text):
        exporter_text.append(text)

    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager)
      exporter.populate_tensor_values(self._alive_values(exporter))
    exporter.save_alive_counts(_File())
    self.assertEqual(
        '{\n  "net/a/Conv2D": 2,\n  "net/b/Conv2D": 3,\n'
        '  "net/fc/MatMul": 1\n}',
        ''.join(exporter_text))

  def test_gamma_regularizer_exports_convs_followed_by_batch_norm(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, name='a')
      b = layers.conv2d(a, 2, 1, name='b_conv')  # No batch norm: no source.
      reg = flop_regularizer.GammaFlopsRegularizer([b.op], gamma_threshold=0.1)
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager)
      self.assertEqual(['a_conv/Conv2D'], list(exporter.tensors))
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        layers.assign(session, 'a_bn/gamma', [0.05, 1.0, 0.0])
        exporter.populate_tensor_values(session.run(exporter.tensors))
    self.assertEqual({'a_conv/Conv2D': 1}, exporter.get_alive_counts())


  def test_name_fn_and_name_collisions(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager, name_fn=lambda op: op.name.split('/')[1])
      self.assertEqual(['a', 'b', 'fc'], sorted(exporter.tensors))
      with self.assertRaisesRegex(
          errors.InvalidArgumentError,
          r"StructureExporter: two exported ops get the name 'net/x' \(one is "
          r'net/b/Conv2D, of type Conv2D\). Pass a name_fn that gives every '
          r'op its own name, or remove_common_prefix=False.'):
        structure_exporter.StructureExporter(
            reg.op_regularizer_manager, name_fn=lambda op: 'net/x')

  def test_populate_needs_exactly_the_names_of_tensors(self):
    with tf.Graph().as_default():
      reg = self._build()
      exporter = structure_exporter.StructureExporter(
          reg.op_regularizer_manager, remove_common_prefix=True)
    values = {'a/Conv2D': [True], 'b/Conv2D': [True], 'fc/MatMul': [True]}
    with self.assertRaisesRegex(
        errors.InvalidArgumentError,
        r'populate_tensor_values needs a value for exactly the names of '
        r"`tensors`; missing: \[\], unknown: \['extra/Conv2D'\]. Pass the "
        r'result of evaluating `exporter.tensors`.'):
      exporter.populate_tensor_values(dict(values, **{'extra/Conv2D': [1]}))
    with self.assertRaises(errors.NotReadyError) as caught:
      exporter.get_alive_counts()
    self.assertEqual(
        'StructureExporter has no alive values yet: call '
        'populate_tensor_values (with the evaluated `tensors`) before '
        'get_alive_counts.', str(caught.exception))
    exporter.populate_tensor_values(values)
    self.assertEqual({'a/Conv2D': 1, 'b/Conv2D': 1, 'fc/MatMul': 1},
                     exporter.get_alive_counts())

  def test_only_the_first_common_scope_is_removed(self):
    # As the original: one scope, and only when every name has it.
    remove = structure_exporter.get_remove_common_prefix_fn(
        ['outer/inner/a/Conv2D', 'outer/inner/b/Conv2D'])
    self.assertEqual('inner/a/Conv2D', remove('outer/inner/a/Conv2D'))
    remove = structure_exporter.get_remove_common_prefix_fn(
        ['outer/a/Conv2D', 'other/b/Conv2D'])
    self.assertEqual('outer/a/Conv2D', remove('outer/a/Conv2D'))
    remove = structure_exporter.get_remove_common_prefix_fn(iter(['x', 'x/y']))
    self.assertEqual('x/y', remove('x/y'))
    remove = structure_exporter.get_remove_common_prefix_fn([])
    self.assertEqual('a/b', remove('a/b'))

  def test_format_structure(self):
    self.assertEqual('{\n  "a": 1,\n  "b/c": 0\n}',
                     structure_exporter.format_structure({'b/c': 0, 'a': 1}))
    self.assertEqual('{}', structure_exporter.format_structure({}))

  def test_ops_without_regularizer_are_reported(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      a = layers.conv_bn_relu(x, 3, name='a')
      b = layers.conv2d(a, 2, 1, name='b_conv')
      reg = flop_regularizer.GammaFlopsRegularizer([b.op], gamma_threshold=0.1)
      with self.assertLogs('absl', level='WARNING') as logs:
        structure_exporter.StructureExporter(reg.op_regularizer_manager)
    self.assertEqual(
        ['StructureExporter: no regularizer for b_conv/Conv2D (Conv2D); its '
         'width is not exported.'], [r.getMessage() for r in logs.records])


if __name__ == '__main__':
  tf.test.main()
