"""tpu_util off-TPU: variable reads map to variables, stores are per graph."""

import tensorflow as tf

from morph_net import errors
from morph_net.compat import tpu_util

_v1 = tf.compat.v1


class ConvertToVariableTest(tf.test.TestCase):

  def test_resource_read_maps_to_its_variable(self):
    with tf.Graph().as_default():
      variable = _v1.get_variable('scope/gamma', [3], use_resource=True)
      read = tf.raw_ops.ReadVariableOp(resource=variable.handle,
                                       dtype=tf.float32)
      self.assertIs(variable, tpu_util.maybe_convert_to_variable(read))
      self.assertIs(variable,
                    tpu_util.maybe_convert_to_variable(tf.identity(read)))
      self.assertEqual('scope/gamma', tpu_util.get_variable_name(read.op))

  def test_variable_made_without_get_variable_is_found(self):
    with tf.Graph().as_default():
      variable = tf.Variable(tf.ones([2]), name='plain')
      self.assertIs(variable,
                    tpu_util.maybe_convert_to_variable(variable.read_value()))

  def test_other_tensors_are_returned_unchanged(self):
    with tf.Graph().as_default():
      data = _v1.placeholder(tf.float32, [2])
      ref = _v1.get_variable('ref', [2], use_resource=False)
      relu = tf.nn.relu(data)
      self.assertIs(relu, tpu_util.maybe_convert_to_variable(relu))
      ref_read = tf.identity(ref)
      self.assertIs(ref_read, tpu_util.maybe_convert_to_variable(ref_read))

  def test_get_variable_name_of_other_op_raises(self):
    with tf.Graph().as_default():
      relu = tf.nn.relu(tf.ones([2]), name='act')
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  r"type ReadVariableOp\. Received: 'act' "
                                  r'\(Relu\)'):
        tpu_util.get_variable_name(relu.op)

  def test_get_variable_name_of_handle_not_from_variable_raises(self):
    with tf.Graph().as_default():
      handle = _v1.placeholder(tf.resource, [], name='handle')
      read = tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  "comes from 'handle' \\(Placeholder\\), "
                                  'not from a variable'):
        tpu_util.get_variable_name(read.op)

  def test_read_of_variable_missing_from_graph_raises(self):
    with tf.Graph().as_default():
      handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[2],
                                      shared_name='orphan', name='orphan')
      read = tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)
      with self.assertRaisesRegex(errors.UnsupportedGraphError,
                                  "reads variable 'orphan', which is not in "
                                  "the graph's GLOBAL_VARIABLES"):
        tpu_util.maybe_convert_to_variable(read)


class WriteToVariableTest(tf.test.TestCase):

  def test_write_copies_and_reuse_rules(self):
    with tf.Graph().as_default():
      foo = tf.constant([1.0, 2.0], name='foo')
      copy = tpu_util.write_to_variable(foo)
      with self.assertRaisesRegex(ValueError, 'tpu_util__foo'):
        tpu_util.write_to_variable(foo)
      with _v1.variable_scope('outer', reuse=True):
        # The reuse of enclosing scopes does not apply.
        with self.assertRaises(ValueError):
          tpu_util.write_to_variable(foo, fail_if_exists=True)
        again = tpu_util.write_to_variable(foo, fail_if_exists=False)
      variable = tpu_util.var_store[foo]
      self.assertEqual('tpu_util__foo', variable.op.name)
      self.assertIs(variable, tpu_util.var_store[copy])
      self.assertIs(variable, tpu_util.var_store[again])
      self.assertLen(set(tpu_util.var_store.values()), 1)
      self.assertTrue(tpu_util.is_intermediate_var(variable))
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        self.assertAllEqual([1.0, 2.0], session.run(copy))
        self.assertAllEqual([1.0, 2.0], session.run(variable))

  def test_stores_are_per_graph(self):
    with tf.Graph().as_default():
      first = tf.constant(1.0, name='x')
      tpu_util.write_to_variable(first)
      self.assertLen(tpu_util.var_store, 2)  # The tensor and its copy.
    with tf.Graph().as_default():
      self.assertEmpty(tpu_util.var_store)  # Iterates this graph's entries.
      self.assertIn(first, tpu_util.var_store)  # Looked up in its graph.
      second = tf.constant(1.0, name='x')
      tpu_util.write_to_variable(second)  # Same name, another graph: fine.
      self.assertLen(tpu_util.var_store, 2)

  def test_read_from_variable_on_and_off_cpu(self):
    with tf.Graph().as_default():
      tensor = tf.constant(3.0, name='t')
      tpu_util.write_to_variable(tensor)
      self.assertIs(tensor, tpu_util.read_from_variable(tensor))
      self.assertFalse(tpu_util.is_on_cpu())
      with tpu_util.run_on_cpu():
        self.assertTrue(tpu_util.is_on_cpu())
        with tpu_util.run_on_cpu():
          pass
        self.assertTrue(tpu_util.is_on_cpu())
        variable = tpu_util.read_from_variable(tensor)
        self.assertIs(tpu_util.var_store[tensor], variable)
        self.assertIs(variable, tpu_util.maybe_convert_to_variable(tensor))
      self.assertFalse(tpu_util.is_on_cpu())

  def test_write_of_a_variable_raises(self):
    with tf.Graph().as_default():
      variable = _v1.get_variable('v', [1], use_resource=True)
      with self.assertRaisesRegex(errors.InvalidArgumentError,
                                  'Expected a tf.Tensor. Received: .*'
                                  'ResourceVariable'):
        tpu_util.write_to_variable(variable)


if __name__ == '__main__':
  tf.test.main()
