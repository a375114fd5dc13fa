"""Tests for morph_net.keras.expansion: expanding a model's structure."""

import json

import keras
import pytest

from morph_net.keras import expansion
from morph_net.keras import model_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.structure import structure_files
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm

_SHRUNK = tm.SHRUNK_RESIDUAL


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


# Rounding to multiples of 8 on this small model moves the cost in steps of
# about 2.5%, so only the nearest step is guaranteed there.
@pytest.mark.parametrize('round_to,tolerance', [(1, 0.01), (8, 0.03)])
def test_expand_to_original_cost_within_one_percent(round_to, tolerance):
  model = tm.residual_model(width=8)
  target = model_regularizer.model_cost(model)
  new, m, cost = expansion.expand_to_cost(model, _SHRUNK, target,
                                          round_to=round_to)
  assert m > 1.0
  assert abs(cost - target) <= tolerance * target
  # Independent check on the rebuilt model.
  rebuilt = rebuild.rebuild(model, new)
  assert tm.hand_flops(rebuilt) == cost
  # Groups consistent, vanished stays vanished, rounding respected.
  assert new['b2_conv1'] == 0
  assert new['stem'] == new['b1_conv2']
  assert new['b2_conv2'] == new['b2_proj']
  assert all(w % round_to == 0 for w in new.values())
  assert 'logits' not in new


def test_expand_to_absolute_model_size():
  model = tm.residual_model(width=8)
  cls = model_size_regularizer.GammaModelSizeRegularizer
  new, _, cost = expansion.expand_to_cost(model, _SHRUNK, 50000.0,
                                          resource=cls)
  assert abs(cost - 50000.0) <= 500.0
  assert tm.kernel_params(rebuild.rebuild(model, new)) == cost


def test_expand_rejects_bad_inputs():
  model = tm.residual_model()
  with pytest.raises(ValueError, match='target_cost=0'):
    expansion.expand_to_cost(model, {}, 0)
  with pytest.raises(ValueError, match='equal widths'):
    expansion.expand_to_cost(model, {'stem': 3, 'b1_conv2': 4}, 1e5)


def test_expand_file_prints_costs(tmp_path):
  model = tm.residual_model(width=8)
  src = str(tmp_path / 's.json')
  structure_files.write_structure(_SHRUNK, src)
  lines = []
  new = expansion.expand_file(model, src, str(tmp_path / 'o.json'),
                              target_cost='original', print_fn=lines.append)
  assert 'cost before' in lines[0] and 'after' in lines[0]
  assert json.load(open(str(tmp_path / 'o.json'))) == new
  with pytest.raises(ValueError, match='exactly one'):
    expansion.expand_file(model, src, str(tmp_path / 'o.json'))
