"""StructureCost equals the regularizer's get_cost() for every family.

Each regularizer (Gamma, GroupLasso, LogisticSigmoid sources x FLOPs, model
size, latency and activation count where the class exists) is built on a
model with dead channels; costing its alive counts with StructureCost, which
evaluates the regularizer's own resource function on the traced ops with
the rebuild plan's widths, gives the regularizer's cost.
"""

import keras
import pytest

from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.network_regularizers import registry
from morph_net.surgery import rebuild
from morph_net.testing import gating_models
from morph_net.testing import surgery_models as tm

# residual_model with the batch-norm gammas of trailing channels zeroed.
_GAMMA_ALIVE = tm.ALIVE_RESIDUAL
# residual_model with the second half of every conv's filters zeroed; the
# logits reach the model output and keep their 5 units.
_LASSO_ALIVE = {'stem': 4, 'b1_conv1': 3, 'b1_conv2': 4, 'b2_conv1': 3,
                'b2_conv2': 6, 'b2_proj': 6, 'logits': 5}
# gated_residual: gates a and b feed an Add, so their channels are one group,
# alive where either gate is open (channels 0, 1, 2).
_GATE_ALIVE = {'conv_a': 3, 'conv_b': 3}

_LATENCY = {'hardware': 'V100', 'batch_size': 4}
# name: (regularizer arguments, the cost of the alive structure). FLOPs and
# weights are also checked on the rebuilt model below; activation counts are
# the regularizer's. Latency (ns on a V100 at batch 4) is checked against
# the regularizer only: its per-op formula is the resource function's (whose
# numbers the network_regularizers tests pin), not this test's.
_CASES = {
    'GammaFlopsRegularizer': ({}, 294854),
    'GammaModelSizeRegularizer': ({}, 1123),
    'GammaLatencyRegularizer': (_LATENCY, None),
    # Alive output channels of the convs and the dense (5 logits).
    'GammaActivationRegularizer': ({}, 5 + 3 + 5 + 6 + 7 + 7 + 5),
    'GroupLassoFlopsRegularizer': ({}, 203580),
    'GroupLassoModelSizeRegularizer': ({}, 648),
    'GroupLassoLatencyRegularizer': (_LATENCY, None),
    'GroupLassoActivationRegularizer': ({}, 4 + 3 + 4 + 3 + 6 + 6 + 5),
    'LogisticSigmoidFlopsRegularizer': ({}, 22656),
    'LogisticSigmoidModelSizeRegularizer': ({}, 177),
    'LogisticSigmoidLatencyRegularizer': (_LATENCY, None),
}


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _gamma_model():
  model = tm.residual_model()
  tm.randomize_batch_norms(model)
  tm.zero_gammas(model, {
      'stem_bn': range(5), 'b1_conv2_bn': range(5), 'b1_conv1_bn': range(3),
      'b2_conv2_bn': range(7), 'b2_proj_bn': range(7)})
  return model, 1e-3, None, _GAMMA_ALIVE


def _group_lasso_model():
  model = tm.residual_model()
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
      kernel[..., kernel.shape[-1] // 2:] = 0.0
      layer.kernel.assign(kernel)
  return model, 1e-3, None, _LASSO_ALIVE


def _gated_model():
  model = gating_models.gated_residual()
  gating_models.set_log_odds(model, 'gate_a', [20.0, -20.0, 20.0, -20.0])
  gating_models.set_log_odds(model, 'gate_b', [20.0, 20.0, -20.0, -20.0])
  # The gate follows its input's channels (a built-in surgery rule).
  return model, 0.5, None, _GATE_ALIVE


def _model_for(name):
  if name.startswith('Gamma'):
    return _gamma_model()
  if name.startswith('GroupLasso'):
    return _group_lasso_model()
  return _gated_model()


# The gate's per-channel ops (Sigmoid, Sub, AddV2 on the [C] log-odds) are
# in the gate's group, so get_cost() prices them at the alive width, as the
# rebuilt model runs them (the latency case: they are memory-bound).
@pytest.mark.parametrize('name', sorted(_CASES))
def test_structure_cost_equals_get_cost(name):
  kwargs, expected = _CASES[name]
  model, threshold, rules, alive = _model_for(name)
  regularizer = model_regularizer.model_regularizer(
      model, registry.get_regularizer_class(name), threshold, **kwargs)
  assert regularizer.alive_counts() == alive
  # The regularizer's cost ops join the traced graph first (a layer of the
  # gated model is called 'add', like some of them): only the model's own
  # ops are costed.
  expected_cost = float(regularizer.cost())
  cost = structure_cost.StructureCost(regularizer, layer_rules=rules)
  assert cost.traced is regularizer.traced
  assert cost(alive) == pytest.approx(expected_cost, rel=1e-6)
  if expected is not None:
    assert cost(alive) == pytest.approx(expected, rel=1e-6)
  assert cost({}) > cost(alive)


@pytest.mark.parametrize('source', ['Gamma', 'GroupLasso'])
def test_flops_and_weights_equal_the_rebuilt_models(source):
  model, _, _, alive = _model_for(source)
  rebuilt = rebuild.rebuild(model, alive)
  assert tm.hand_flops(rebuilt) == _CASES[source + 'FlopsRegularizer'][1]
  assert tm.kernel_params(rebuilt) == _CASES[
      source + 'ModelSizeRegularizer'][1]


def test_ops_regularizers_add_to_the_trace_are_not_costed():
  model, threshold, rules, _ = _gated_model()
  regularizer = model_regularizer.model_regularizer(
      model, registry.get_regularizer_class(
          'LogisticSigmoidLatencyRegularizer'), threshold, **_LATENCY)
  regularizer.cost()  # Adds 'morph_net_cost/add...' ops; a layer is 'add'.
  forward = regularizer.traced.forward_ops()
  assert not [op for op in forward if op.name.startswith('morph_net')]
  costed = structure_cost.StructureCost(regularizer,
                                        layer_rules=rules).costed_ops()
  assert {op.name for op, _, _ in costed} <= {op.name for op in forward}
  assert {name for _, name, _ in costed} == {
      'conv_a', 'gate_a', 'conv_b', 'gate_b', 'add', 'conv_c'}
