"""Tests of LogisticSigmoidSourceOpHandler, ProbGatingRegularizer and the registry."""

import numpy as np
import pytest
import tensorflow as tf

from morph_net.framework import op_regularizer_manager as orm
from morph_net.framework import probabilistic_grouping_regularizer as pgr
from morph_net.compat import keras as compat
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import logistic_sigmoid_source_op_handler as ls
from morph_net.op_handlers import op_handlers
from morph_net.op_regularizers import prob_gating_regularizer
from morph_net.probabilistic_gating import activation_gating as ag
from morph_net.testing import gating_models
from morph_net.testing import tf1_layers

keras = compat.get_keras()


def _gate_ops(graph):
  return [op for op in graph.get_operations() if ls.get_gate(op) is not None]


def _keras_model_with_lookalikes():
  """Gates next to Mul ops that are not gates (batch norm, squeeze-excite)."""
  inputs = keras.Input((6, 6, 3))
  y = keras.layers.Conv2D(4, 3, padding='same', name='conv1')(inputs)
  y = keras.layers.BatchNormalization(name='bn1')(y)  # Mul(x, rsqrt*gamma).
  y = ag.LogisticSigmoidGating(name='gate1', straight_through=True)(y)
  squeeze = keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
  excite = keras.layers.Conv2D(4, 1, activation='sigmoid', name='se')(squeeze)
  y = keras.layers.Multiply(name='se_mul')([y, excite])
  y = keras.layers.Conv2D(5, 3, padding='same', name='conv2')(y)
  y = ag.LogisticSigmoidGating(name='gate2', keep_first_channel_alive=False,
                               soft_mask_for_inference=True)(y)
  return keras.Model(inputs, y)


@pytest.mark.parametrize('training', [False, True])
def test_finds_keras_gates_in_traced_graph(training):
  model = _keras_model_with_lookalikes()
  fn = gating_models.trace(model, training=training)
  gates = _gate_ops(fn.graph)
  assert len(gates) == 2
  assert all('gate' in op.name for op in gates)
  # The log-odds found are reads of the gate variables.
  for op, name in zip(gates, ('gate1', 'gate2')):
    gate = ls.get_gate(op)
    assert gate.log_odds.shape == model.get_layer(name).log_odds.shape
    values = gating_models.evaluate(fn, gate.log_odds).numpy()
    np.testing.assert_array_equal(
        values, model.get_layer(name).log_odds.numpy())
    assert gate.inputs.shape[-1] == gate.mask.shape[-1]


def test_gradient_reaches_log_odds_through_found_tensor():
  model = _keras_model_with_lookalikes()
  fn = gating_models.trace(model)
  gate = ls.get_gate(_gate_ops(fn.graph)[0])
  with fn.graph.as_default():
    total = tf.reduce_sum(tf.sigmoid(gate.log_odds))
  with tf.GradientTape() as tape:
    value = gating_models.evaluate(fn, total)
  gradient = tape.gradient(value, model.get_layer('gate1').log_odds)
  assert gradient is not None and np.all(gradient.numpy() > 0)


def test_finds_gates_in_tf1_graph():
  # Training in a TF1 graph builds the original's pattern (a
  # LogisticSigmoidGating op, the source); inference builds a gating Mul.
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [2, 6, 6, 3])
    y = tf1_layers.conv2d(x, 4, 3, name='conv1')
    y = ag.logistic_sigmoid_gating(y, -1, True, temperature=0.5,
                                   annealing_rate=100, scope='gate1')
    y = tf1_layers.conv2d(y, 3, 3, name='conv2')
    y = ag.logistic_sigmoid_gating(y, -1, False, scope='gate2')
    log_odds = [v for v in tf.compat.v1.global_variables()
                if 'mask_logits' in v.name]
  handler = ls.LogisticSigmoidSourceOpHandler()
  sources = [op for op in graph.get_operations() if handler.is_source(op)]
  assert [(op.name.split('/')[0][:5], op.type) for op in sources] == [
      ('gate1', 'LogisticSigmoidGating'), ('gate2', 'Mul')]
  original, gate2 = sources
  reads = [original.inputs[0], ls.get_gate(gate2).log_odds]
  for read, variable in zip(reads, log_odds):
    assert read.op.type == 'ReadVariableOp'
    assert read.op.inputs[0].op is variable.handle.op
  # The multiply by the original op's mask is a grouping op, not a gate.
  assert [op.name.split('/')[0][:5] for op in _gate_ops(graph)] == ['gate2']


def test_raw_tf1_gate_pattern_and_lookalikes():
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [2, 4, 4, 3])
    log_odds = tf.compat.v1.get_variable('log_odds', [3], use_resource=True)
    other = tf.compat.v1.get_variable('other', [3], use_resource=True)
    gated = x * tf.sigmoid(log_odds)  # A gate written by hand.
    scaled = x * other  # Scale without Sigmoid/Greater: not a gate.
    two_vars = x * tf.sigmoid(log_odds * other)  # Ambiguous: not a gate.
    batch_gate = x * tf.sigmoid(tf.reduce_mean(x, [1, 2], keepdims=True))
    vector = tf.sigmoid(log_odds) * tf.sigmoid(log_odds)  # Rank 1 output.
  assert ls.get_gate(gated.op).log_odds.op.inputs[0].op.name == 'log_odds'
  for tensor in (scaled, two_vars, batch_gate, vector):
    assert ls.get_gate(tensor.op) is None, tensor.op.name


def test_channels_first_gate_is_not_a_source():
  inputs = keras.Input((3, 4, 4))
  outputs = ag.LogisticSigmoidGating(axis=1)(inputs)
  fn = gating_models.trace(keras.Model(inputs, outputs))
  assert not _gate_ops(fn.graph)


def test_handler_groups_gate_with_its_input_and_mask():
  model = gating_models.gated_chain(filters=(4, 6))
  fn = gating_models.trace(model)
  handlers = op_handlers.get_logistic_sigmoid_op_handler_dict()
  manager = orm.OpRegularizerManager(
      gating_models.output_ops(fn), handlers,
      create_grouping_regularizer=pgr.ProbabilisticGroupingRegularizer)
  gates = manager.source_ops
  assert len(gates) == 2
  conv1 = [op for op in manager.ops if op.type == 'Conv2D'][0]
  gate1_group = manager.get_op_group(manager.get_op_slices(gates[0])[0])
  ops_in_group = {s.op for s in gate1_group.op_slices}
  assert conv1 in ops_in_group
  # The mask computation ([C] vectors) shares the gated channels, so its
  # dead channels leave the cost as they leave the rebuilt gate.
  assert {op.type for op in ops_in_group} == {
      'Conv2D', 'Mul', 'Identity', 'Cast', 'StopGradient', 'Greater',
      'AddV2', 'Sub', 'Sigmoid', 'ReadVariableOp'}
  # Nothing of the second gate or the second conv joins it.
  assert not [op for op in ops_in_group if 'gate2' in op.name or
              'conv2' in op.name]
  regularizer = manager.get_regularizer(conv1)
  assert isinstance(regularizer, prob_gating_regularizer.ProbGatingRegularizer)


def test_handler_contract():
  handler = ls.LogisticSigmoidSourceOpHandler()
  assert handler.is_source_op and handler.is_passthrough
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3])
    plain = x * 2.0
  assert not handler.is_source(plain.op)


def _regularizer(log_odds, mask, **kwargs):
  return prob_gating_regularizer.ProbGatingRegularizer(
      tf.constant(log_odds, tf.float32), tf.constant(mask, tf.float32),
      **kwargs)


def test_prob_gating_regularizer_vectors():
  log_odds = [3.0, -1.0, -3.0, 0.5]
  mask = [1.0, 0.0, 0.05, 1.0]
  probability = 1.0 / (1.0 + np.exp(-np.array(log_odds)))
  reg = _regularizer(log_odds, mask)
  np.testing.assert_allclose(reg.regularization_vector.numpy(), mask)
  np.testing.assert_array_equal(reg.alive_vector.numpy(),
                                [True, False, False, True])
  reg = _regularizer(log_odds, mask, regularize_on_mask=False,
                     mask_as_alive_vector=False, alive_threshold=0.2)
  np.testing.assert_allclose(reg.regularization_vector.numpy(), probability,
                             rtol=1e-6)
  np.testing.assert_array_equal(reg.alive_vector.numpy(), probability > 0.2)
  np.testing.assert_allclose(reg.probability.numpy(), probability, rtol=1e-6)


def test_prob_gating_regularizer_shape_mismatch():
  with pytest.raises(ValueError, match='Invalid value for arguments `logits` '
                     'and `mask`'):
    _regularizer([1.0, 2.0], [1.0, 0.0, 1.0])


def test_probabilistic_grouping_of_gates():
  a = _regularizer([0.0, 0.0], [0.5, 0.0])
  b = _regularizer([0.0, 0.0], [0.5, 0.2])
  group = pgr.ProbabilisticGroupingRegularizer([a, b])
  np.testing.assert_allclose(group.regularization_vector.numpy(), [0.75, 0.2])
  np.testing.assert_array_equal(group.alive_vector.numpy(), [True, True])


def test_registry_factory():
  handlers = op_handlers.get_logistic_sigmoid_op_handler_dict(
      regularize_on_mask=False, alive_threshold=0.3)
  assert isinstance(handlers['Mul'], ls.LogisticSigmoidSourceOpHandler)
  assert handlers['Mul']._alive_threshold == 0.3  # pylint: disable=protected-access
  assert isinstance(handlers['Relu'], grouping_op_handler.GroupingOpHandler)
  assert not handlers['FusedBatchNormV3'].is_source_op
  other = op_handlers.get_logistic_sigmoid_op_handler_dict()
  assert other['Mul'] is not handlers['Mul']
