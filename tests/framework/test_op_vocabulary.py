"""Tests of morph_net.framework.op_vocabulary: the op-type sets are defined
once, and the one walk back to a variable."""

import ast
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

import morph_net
from morph_net.framework import graph_util
from morph_net.framework import op_vocabulary
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import op_types
from morph_net.network_regularizers import resource_function

_v1 = tf.compat.v1
_PACKAGE = os.path.dirname(morph_net.__file__)
_SETS = {
    'RESHAPE_LIKE_OP_TYPES': op_vocabulary.RESHAPE_LIKE_OP_TYPES,
    'FORWARDING_OP_TYPES': op_vocabulary.FORWARDING_OP_TYPES,
    'REDUCTION_OP_TYPES': op_vocabulary.REDUCTION_OP_TYPES,
    'CALL_OP_TYPES': op_vocabulary.CALL_OP_TYPES,
    'LOOP_OP_TYPES': op_vocabulary.LOOP_OP_TYPES,
}


def _string_collections(path):
  """(line, set of strings) of every literal list/tuple/set of strings."""
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and node.elts and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str)
        for e in node.elts):
      yield node.lineno, {e.value for e in node.elts}


@pytest.mark.parametrize('name', sorted(_SETS))
def test_each_set_is_written_out_once(name):
  found = []
  for root, _, files in os.walk(_PACKAGE):
    for file_name in files:
      if file_name.endswith('.py'):
        path = os.path.join(root, file_name)
        for line, values in _string_collections(path):
          if values == set(_SETS[name]):
            found.append('%s:%d' % (os.path.relpath(path, _PACKAGE), line))
  assert len(found) == 1 and found[0].startswith(
      os.path.join('framework', 'op_vocabulary.py')), found


def test_the_sets():
  assert op_vocabulary.RESHAPE_LIKE_OP_TYPES == {'ExpandDims', 'Reshape',
                                                 'Squeeze'}
  assert op_vocabulary.REDUCTION_OP_TYPES == {
      'EuclideanNorm', 'Max', 'Mean', 'Min', 'Prod', 'Sum'}
  assert op_vocabulary.MAX_WALK_STEPS == 64
  assert op_types.CONV_OP_TYPES is op_vocabulary.CONV_OP_TYPES
  assert op_types.CALL_OP_TYPES is op_vocabulary.CALL_OP_TYPES


def _identity_chain(tensor, length):
  for index in range(length):
    tensor = tf.identity(tensor, name='id%d' % index)
  return tensor


def test_walk_back_follows_forwarding_ops_only_by_default():
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, [3], name='x')
    expanded = tf.expand_dims(tf.cast(tf.identity(x), tf.float32), 0)
    top = tf.identity(expanded)
    assert op_vocabulary.walk_back(top) is expanded
    assert op_vocabulary.walk_back(top, through_reshapes=True) is x
    refuse = lambda tensor: False
    assert op_vocabulary.walk_back(top, through_reshapes=True,
                                   reshape_filter=refuse) is expanded


def test_walk_back_returns_the_read_of_a_variable_not_its_handle():
  with tf.Graph().as_default():
    variable = tf.Variable(np.ones([2, 3], np.float32), name='w')
    read = variable.read_value()
    top = tf.identity(tf.reshape(tf.identity(read), [3, 2]))
    found = op_vocabulary.walk_back(top, through_reshapes=True)
    assert found.op.type == 'ReadVariableOp'
    handle = tf.identity(variable.handle)
    assert op_vocabulary.walk_back(handle).op.type == 'VarHandleOp'


def test_walk_back_stops_after_max_walk_steps():
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, [3], name='x')
    top = _identity_chain(x, op_vocabulary.MAX_WALK_STEPS + 2)
    assert op_vocabulary.walk_back(top).op.name == 'id1'
    short = _identity_chain(x, 3)
  assert op_vocabulary.walk_back(short) is x


def test_graph_util_walks_through_the_vocabulary():
  with tf.Graph().as_default():
    variable = tf.Variable(np.ones([3, 2, 4], np.float32), name='kernel')
    expanded = tf.expand_dims(tf.identity(variable.read_value()), 0)
    assert graph_util.holds_weights(expanded)
    assert not graph_util.reads_variable(expanded)
    assert graph_util.reads_variable(tf.cast(variable.read_value(),
                                             tf.float16))
    x = _v1.placeholder(tf.float32, [3, 2, 4])
    assert not graph_util.holds_weights(tf.expand_dims(x, 0))


def test_a_euclidean_norm_costs_its_input_not_its_axes():
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, [2, 4, 4, 3])
    norm = tf.raw_ops.EuclideanNorm(input=x, axis=[1, 2], keep_dims=True)
    assert norm.op.type == 'EuclideanNorm'
    (form,) = cost_forms.memory_forms(norm.op)
  # Input: 16 positions x 4 bytes per channel; output: 1 position.
  assert form == cost_forms.Form(0.0, 16 * 4.0, 4.0, False)


def test_resource_function_keeps_the_originals_names_without_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    for name in ('PEAK_COMPUTE', 'MEMORY_BANDWIDTH', 'flop_coeff',
                 'num_weights_coeff', 'flop_function', 'memory_function',
                 'latency_function', 'latency_function_factory',
                 'model_size_function', 'activation_count_function',
                 'is_flop_op'):
      assert getattr(resource_function, name) is not None


@pytest.mark.parametrize('name', [
    'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES', 'DEPTHWISE_OP_TYPES',
    'MATMUL_OP_TYPES', 'WEIGHTED_OP_TYPES', 'ELEMENTWISE_MEMORY_OP_TYPES',
    'COSTED_OP_TYPES'])
def test_op_type_sets_of_resource_function_are_deprecated_aliases(name):
  with pytest.warns(DeprecationWarning) as caught:
    value = getattr(resource_function, name)
  assert value is getattr(op_types, name)
  assert str(caught[0].message) == (
      'morph_net.network_regularizers.resource_function.%s is deprecated: '
      'import it from morph_net.network_regularizers.op_types (op-type sets '
      'are defined in morph_net.framework.op_vocabulary).' % name)
  assert name not in resource_function.__all__


def test_resource_function_still_raises_for_unknown_names():
  with pytest.raises(AttributeError) as raised:
    resource_function.NOT_A_NAME  # pylint: disable=pointless-statement
  assert str(raised.value) == (
      "module 'morph_net.network_regularizers.resource_function' has no "
      "attribute 'NOT_A_NAME'")
