"""Exact costs and grouping of the LogisticSigmoid network regularizers.

Networks have 8x8 inputs and 'same' padding, so a 3x3 conv from `i` to `o`
alive channels costs 2 * 8 * 8 * 3 * 3 * i * o = 1152 * i * o FLOPs and
9 * i * o weights. Gates are set open (log-odds +20) or shut (-20).
"""

import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_decorator
from morph_net.framework import probabilistic_grouping_regularizer as pgr
from morph_net.compat import keras as compat
from morph_net.network_regularizers import logistic_sigmoid_regularizer as lsr
from morph_net.probabilistic_gating import activation_gating as ag
from morph_net.testing import gating_models as gm
from morph_net.testing import tf1_layers

keras = compat.get_keras()

O, S = gm.OPEN, gm.SHUT
CONV3X3 = 2 * 8 * 8 * 3 * 3  # FLOPs per (input, output) channel pair.


def _chain(gate1, gate2):
  model = gm.gated_chain(filters=(4, 6))
  gm.set_log_odds(model, 'gate1', gate1)
  gm.set_log_odds(model, 'gate2', gate2)
  return model


def _build(model, regularizer_class=lsr.LogisticSigmoidFlopsRegularizer,
           **kwargs):
  fn = gm.trace(model)
  with fn.graph.as_default():
    reg = regularizer_class(gm.output_ops(fn), **kwargs)
    tensors = (reg.get_cost(), reg.get_regularization_term())
  return fn, reg, tensors


def _values(model, regularizer_class=lsr.LogisticSigmoidFlopsRegularizer,
            **kwargs):
  fn, _, tensors = _build(model, regularizer_class, **kwargs)
  return [float(v) for v in gm.evaluate(fn, tensors)]


@pytest.mark.parametrize('gate1, gate2, alive1, alive2', [
    ([O] * 4, [O] * 6, 4, 6),
    ([O, O, S, O], [O, S, S, S, O, O], 3, 3),
    ([S] * 4, [O] * 6, 0, 6),
    ([O] * 4, [S] * 6, 4, 0),
])
def test_flops_cost_and_term(gate1, gate2, alive1, alive2):
  cost, term = _values(_chain(gate1, gate2))
  assert cost == CONV3X3 * (3 * alive1 + alive1 * alive2)
  # term = C * (in * sum(r_out) + out * sum(r_in)), r = mask (0/1 here).
  assert term == CONV3X3 * (3 * alive1 + 2 * alive1 * alive2)


def test_regularize_on_probability():
  model = _chain([O, O, S, 0.0], [O, S, S, S, O, O])
  cost, term = _values(model, regularize_on_mask=False,
                       mask_as_alive_vector=False, alive_threshold=0.4)
  # Gate 1 channel 3 has probability 0.5: alive, regularized by 0.5.
  assert cost == CONV3X3 * (3 * 3 + 3 * 3)
  np.testing.assert_allclose(term, CONV3X3 * (3 * 2.5 + 3 * 3 + 3 * 2.5),
                             rtol=1e-6)


def test_model_size_and_latency():
  model = _chain([O, O, S, O], [O, S, S, S, O, O])
  cost, term = _values(model, lsr.LogisticSigmoidModelSizeRegularizer)
  assert (cost, term) == (9 * (3 * 3 + 3 * 3), 9 * (3 * 3 + 2 * 3 * 3))
  for batch_size in (1, 2):
    fn, reg, (cost, _) = _build(model, lsr.LogisticSigmoidLatencyRegularizer,
                                hardware='FLOP_LATENCY', batch_size=batch_size)
    # 1 GFLOP/s and unlimited bandwidth: latency in ns = FLOPs.
    np.testing.assert_allclose(float(gm.evaluate(fn, cost)),
                               batch_size * CONV3X3 * 18, rtol=1e-6)
    assert (reg.name, reg.cost_name) == ('LogisticSigmoidLatency', 'Latency')


def test_names():
  _, reg, _ = _build(_chain([O] * 4, [O] * 6))
  assert (reg.name, reg.cost_name) == ('LogisticSigmoidFlops', 'FLOPs')
  _, reg, _ = _build(_chain([O] * 4, [O] * 6),
                     lsr.LogisticSigmoidModelSizeRegularizer)
  assert (reg.name, reg.cost_name) == ('LogisticSigmoidModelSize',
                                       'ModelSize')


def test_term_gradient_reaches_every_gate():
  model = _chain([2.0, -2.0, 1.0, -1.0], [0.5] * 6)
  fn, _, (_, term) = _build(model)
  with tf.GradientTape() as tape:
    value = gm.evaluate(fn, term)
  gradients = tape.gradient(value, [model.get_layer('gate1').log_odds,
                                    model.get_layer('gate2').log_odds])
  for gradient in gradients:
    assert np.all(gradient.numpy() > 0)  # Shut gates too (straight-through).


def test_residual_add_groups_gates_on_both_sides():
  model = gm.gated_residual()
  gm.set_log_odds(model, 'gate_a', [O, S, S, O])
  gm.set_log_odds(model, 'gate_b', [O, O, S, S])
  fn, reg, (cost, term) = _build(model)
  manager = reg.op_regularizer_manager
  gate_a, gate_b = manager.source_ops
  group = manager.get_op_group(manager.get_op_slices(gate_a)[0])
  assert group is manager.get_op_group(manager.get_op_slices(gate_b)[0])
  assert {s.op for s in group.source_op_slices} == {gate_a, gate_b}
  regularizer = manager.get_regularizer(gate_a)
  assert isinstance(regularizer, pgr.ProbabilisticGroupingRegularizer)
  alive, vector = gm.evaluate(fn, [regularizer.alive_vector,
                                   regularizer.regularization_vector])
  np.testing.assert_array_equal(alive.numpy(), [True, True, False, True])
  np.testing.assert_allclose(vector.numpy(), [1, 1, 0, 1])
  cost, term = [float(v) for v in gm.evaluate(fn, [cost, term])]
  conv_c = 2 * 8 * 8  # 1x1 conv.
  assert cost == CONV3X3 * (3 * 3 + 3 * 3) + conv_c * 3 * 5
  assert term == CONV3X3 * (3 * 3 + 2 * 3 * 3) + conv_c * 5 * 3


def test_residual_branch_shut_keeps_skip_alive():
  model = gm.gated_residual()
  gm.set_log_odds(model, 'gate_a', O)
  gm.set_log_odds(model, 'gate_b', S)
  cost, _ = _values(model)
  conv_c = 2 * 8 * 8
  assert cost == CONV3X3 * (3 * 4 + 4 * 4) + conv_c * 4 * 5


def test_blacklist_and_force_group():
  model = _chain([O, O, S, O], [O, S, S, S, O, O])
  cost, _ = _values(model, regularizer_blacklist=['gate1'])
  assert cost == CONV3X3 * (3 * 4 + 4 * 3)  # Gate 1 not regularized.
  with pytest.raises(errors.InvalidArgumentError, match='matches no op'):
    _values(model, force_group=['no_such_op'])


def test_regularizer_decorator_scales_the_term():
  model = _chain([O, O, S, O], [O, S, S, S, O, O])
  cost, term = _values(
      model, regularizer_decorator=op_handler_decorator.ScalingRegularizer,
      decorator_parameters={'scale': 0.5})
  assert cost == CONV3X3 * (3 * 3 + 3 * 3)
  assert term == 0.5 * CONV3X3 * (3 * 3 + 2 * 3 * 3)


def _tf1_chain_cost(training, gate1, gate2, keep_second_alive=True):
  """conv1 (4) -> gate1 -> conv2 (6) -> gate2 in a TF1 graph.

  Gate 1 never keeps its first channel alive; gate 2 does by default.

  Returns:
    (cost with the gates' log-odds set to gate1 and gate2, the source ops
    as (scope, op type)).
  """
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3])
    y = tf1_layers.conv2d(x, 4, 3, name='conv1')
    y = ag.logistic_sigmoid_gating(y, -1, training, scope='gate1',
                                   keep_first_channel_alive=False)
    y = tf1_layers.conv2d(y, 6, 3, name='conv2')
    y = ag.logistic_sigmoid_gating(y, -1, training, scope='gate2',
                                   keep_first_channel_alive=keep_second_alive)
    reg = lsr.LogisticSigmoidFlopsRegularizer([y.op], input_boundary=[x.op])
    manager = reg.op_regularizer_manager
    sources = [(op.name.split('/')[0][:5], op.type) for op in manager.ops
               if manager.is_source_op(op)]
    cost = reg.get_cost()
    gates = {v.name.split('/')[0]: v for v in tf.compat.v1.global_variables()
             if 'mask_logits' in v.name}
    assigns = [gates['gate1'].assign(gate1), gates['gate2'].assign(gate2)]
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(assigns)
      return session.run(cost), sources


def test_tf1_graph_costs():
  cost, _ = _tf1_chain_cost(False, [S, O, S, O], [S] * 6)
  # Gate 2 keeps its first channel alive (the default).
  assert cost == CONV3X3 * (3 * 2 + 2 * 1)


def test_tf1_training_gates_are_the_original_ops():
  # Training in a TF1 graph: the sources are the original's
  # LogisticSigmoidGating ops, and the sampled mask gives the alive counts.
  cost, sources = _tf1_chain_cost(True, [S, O, S, O], [O, O, S, S, S, O],
                                  keep_second_alive=False)
  assert sources == [('gate1', 'LogisticSigmoidGating'),
                     ('gate2', 'LogisticSigmoidGating')]
  assert cost == CONV3X3 * (3 * 2 + 2 * 3)


def test_no_gate_error_tells_what_to_add():
  inputs = keras.Input((8, 8, 3))
  outputs = keras.layers.Conv2D(4, 3, name='conv')(inputs)
  fn = gm.trace(keras.Model(inputs, outputs))
  with fn.graph.as_default():
    with pytest.raises(errors.NoSourceOpsError,
                       match='add a morph_net.probabilistic_gating.'
                       'LogisticSigmoidGating layer after each convolution'):
      lsr.LogisticSigmoidFlopsRegularizer(gm.output_ops(fn))
