"""One trace serves the regularizer, structure costs, expansion and export."""

import json

import keras
import numpy as np
import pytest

from morph_net.keras import expansion
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.structure import structure_files
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm
from morph_net.tools import export_structure


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _count_calls(model):
  """Wraps `model.call` (which every trace runs once); returns the log."""
  calls = []
  call = model.call

  def counting_call(*args, **kwargs):
    calls.append(1)
    return call(*args, **kwargs)

  model.call = counting_call
  return calls


def test_regularizer_costs_expansion_and_export_trace_the_model_once(
    tmp_path):
  model = tm.residual_model(width=2)
  tm.randomize_batch_norms(model)
  bn = model.get_layer('b1_conv1_bn')
  gamma = keras.ops.convert_to_numpy(bn.gamma).copy()
  gamma[8:] = 0.0  # 8 of its 12 channels stay alive.
  bn.gamma.assign(gamma)
  calls = _count_calls(model)

  regularizer = model_regularizer.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  cost = structure_cost.StructureCost(regularizer)
  full = cost({})
  learned = cost({'b1_conv1': 8})
  no_branch = cost({'b1_conv1': 0})
  expanded, multiplier, expanded_cost = expansion.expand_to_cost(
      cost, {'b1_conv1': 8, 'b2_conv1': 6}, full)
  exported = export_structure.export(regularizer,
                                     str(tmp_path / 'alive.json'))
  structure_files.write_structure(expanded, str(tmp_path / 'expanded.json'))
  assert len(calls) == 1

  assert isinstance(regularizer.traced, tracing.TracedModel)
  assert float(regularizer.cost()) == learned
  assert exported == regularizer.alive_counts()
  assert exported['b1_conv1'] == 8
  with open(tmp_path / 'alive.json') as f:
    assert json.load(f) == exported
  for structure, value in (({}, full), ({'b1_conv1': 8}, learned),
                           ({'b1_conv1': 0}, no_branch),
                           (expanded, expanded_cost)):
    assert tm.hand_flops(rebuild.rebuild(model, structure)) == value
  assert multiplier > 1.0
  assert abs(expanded_cost - full) <= 0.01 * full
  assert no_branch < learned < full


def test_a_traced_model_is_shared_by_two_regularizers():
  model = tm.residual_model()
  calls = _count_calls(model)
  traced = tracing.TracedModel(model)
  gamma = model_regularizer.model_regularizer(traced)
  lasso = model_regularizer.model_regularizer(
      traced, flop_regularizer.GroupLassoFlopsRegularizer, 1e-9)
  assert len(calls) == 1
  assert gamma.traced is lasso.traced is traced
  assert float(gamma.cost()) == float(lasso.cost()) == tm.hand_flops(model)
  x = np.zeros([1, 16, 16, 3], 'float32')
  model(x)
  assert len(calls) == 2  # The model itself still runs normally.
