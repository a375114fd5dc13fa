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
# about 2.5%; single groups then move to land within 1%.
@pytest.mark.parametrize('round_to,tolerance', [(1, 0.01), (8, 0.01)])
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


def _main_job_like_model():
  """The main job's CNN (examples/fashion_mnist_keras.build_model)."""
  inputs = keras.Input((28, 28, 1))
  x = inputs
  for i, width in enumerate((32, 64, 128)):
    x = keras.layers.Conv2D(width, 3, strides=1 if i == 0 else 2,
                            padding='same', use_bias=False,
                            name='conv%d' % (i + 1))(x)
    x = keras.layers.BatchNormalization(name='bn%d' % (i + 1))(x)
    x = keras.layers.ReLU(name='relu%d' % (i + 1))(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  return keras.Model(inputs, keras.layers.Dense(10, name='logits')(x))


def _hand_flops(c1, c2, c3):
  return (2 * 28 * 28 * 9 * c1 + 2 * 14 * 14 * 9 * c1 * c2 +
          2 * 7 * 7 * 9 * c2 * c3 + 2 * c3 * 10)


def test_expansion_moves_groups_to_land_within_one_percent():
  model = _main_job_like_model()
  target = model_regularizer.model_cost(model)
  assert target == _hand_flops(32, 64, 128) == 14904832
  shrunk = {'conv1': 13, 'conv2': 28, 'conv3': 20}
  plain, m, plain_cost = expansion.expand_to_cost(
      model, shrunk, target, round_to=8, adjust_groups=False)
  assert plain == {'conv1': 40, 'conv2': 80, 'conv3': 56}
  assert plain_cost == _hand_flops(40, 80, 56) == 15806560  # +6.05%.
  new, m_adjusted, cost = expansion.expand_to_cost(model, shrunk, target,
                                                   round_to=8)
  assert m_adjusted == m
  assert new == {'conv1': 40, 'conv2': 72, 'conv3': 64}
  assert cost == _hand_flops(40, 72, 64) == 14790656  # -0.77%.
  assert abs(cost / target - 1) <= 0.01


def test_an_unreachable_target_reports_the_gap(caplog):
  model = _main_job_like_model()
  with caplog.at_level('WARNING'):
    new, _, cost = expansion.expand_to_cost(
        model, {'conv1': 13, 'conv2': 28, 'conv3': 20}, 100000.0,
        round_to=8)
  assert new == {'conv1': 8, 'conv2': 8, 'conv3': 8}
  assert cost == _hand_flops(8, 8, 8) == 395296
  assert ('Cannot bring the cost within 1% of the target 100000: the '
          'closest is 395296, 295.30% above it, because every scaled group '
          'is at its smallest width (8 channels, round_to); the layers that '
          'keep their width and the vanished ones cost the rest.'
          ) in caplog.text
