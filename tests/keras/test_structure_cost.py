"""Tests for morph_net.keras.structure_cost and the bridge's cost helpers."""

import keras
import pytest

from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import resource_function
from morph_net.testing import surgery_models as tm


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


class _LatencyCost(object):
  resource_function = staticmethod(
      resource_function.latency_function_factory('V100'))


def test_model_regularizer_names_the_threshold_per_family():
  model = tm.residual_model()
  gamma = model_regularizer.model_regularizer(model, threshold=0.5)
  assert isinstance(gamma.network_regularizer,
                    flop_regularizer.GammaFlopsRegularizer)
  lasso = model_regularizer.model_regularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, 1e-9)
  assert lasso.alive_counts()['stem'] == 8


def test_regularizer_without_threshold_raises():

  class NoThreshold(object):

    def __init__(self, output_boundary, input_boundary=None):
      del output_boundary, input_boundary

  with pytest.raises(ValueError, match='regularizer_class=NoThreshold'):
    model_regularizer.model_regularizer(tm.residual_model(), NoThreshold)


def test_structure_cost_maps_weightless_ops_for_latency():
  coster = structure_cost.StructureCost(tm.residual_model(), _LatencyCost)
  by_type = {}
  for op, name, weighted in coster.costed_ops():
    by_type.setdefault(op.type, set()).add(name)
    assert weighted == (op.type in resource_function.WEIGHTED_OP_TYPES)
  assert 'b1_out' in by_type['Relu']
  assert 'logits' in by_type['MatMul']
  full = coster.cost({})
  assert 0 < coster.cost({'b2_conv1': 3, 'b2_conv2': 4, 'b2_proj': 4}) < full


def test_placeholders_map_to_given_layers():
  inner = keras.Sequential(
      [keras.Input((4,)), keras.layers.Dense(3, name='d')], name='inner')
  x = keras.Input((4,))
  model = keras.Model(x, inner(x), name='outer')
  function = tracing.trace_model(model, tracing.get_input_signature(model))
  innermost = tracing.map_placeholders_to_layers(model, function.graph)
  top_level = tracing.map_placeholders_to_layers(
      model, function.graph, layers=model.layers)
  assert set(innermost.values()) == {'d'}
  assert set(top_level.values()) == {'inner'}
