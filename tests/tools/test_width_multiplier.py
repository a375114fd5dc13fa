"""Tests for morph_net.tools.width_multiplier and expand_structure."""

import json
import os
import subprocess
import sys

import keras
import pytest

from morph_net.network_regularizers import model_size_regularizer
from morph_net.structure import structure_files
from morph_net.tools import keras_cost
from morph_net.tools import rebuild
from morph_net.tools import width_multiplier as wm
import tools_test_models as tm

_SHRUNK = {'stem': 20, 'b1_conv2': 20, 'b1_conv1': 13, 'b2_conv1': 0,
           'b2_conv2': 35, 'b2_proj': 35}


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def test_scale_width_rounding_and_zero():
  assert wm.scale_width(10, 1.26) == 13
  assert wm.scale_width(10, 1.26, round_to=8) == 16
  assert wm.scale_width(1, 0.1) == 1
  assert wm.scale_width(0, 5.0) == 0
  with pytest.raises(ValueError, match='multiplier=-1'):
    wm.scale_width(3, -1)
  with pytest.raises(ValueError, match='round_to=0'):
    wm.scale_width(3, 2, round_to=0)


def test_multiply_keeps_zero_and_equal_widths():
  out = wm.multiply({'a': 6, 'b': 6, 'c': 0, 'd': 3}, 1.5, round_to=2)
  assert out == {'a': 10, 'b': 10, 'c': 0, 'd': 4}


# Rounding to multiples of 8 on this small model moves the cost in steps of
# about 2.5%, so only the nearest step is guaranteed there.
@pytest.mark.parametrize('round_to,tolerance', [(1, 0.01), (8, 0.03)])
def test_expand_to_original_cost_within_one_percent(round_to, tolerance):
  model = tm.residual_model(width=8)
  target = keras_cost.model_cost(model)
  new, m, cost = wm.expand_to_cost(model, _SHRUNK, target, round_to=round_to)
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
  new, _, cost = wm.expand_to_cost(model, _SHRUNK, 50000.0,
                                   regularizer_class=cls)
  assert abs(cost - 50000.0) <= 500.0
  assert tm.kernel_params(rebuild.rebuild(model, new)) == cost


def test_expand_rejects_bad_inputs():
  model = tm.residual_model()
  with pytest.raises(ValueError, match='target_cost=0'):
    wm.expand_to_cost(model, {}, 0)
  with pytest.raises(ValueError, match='equal widths'):
    wm.expand_to_cost(model, {'stem': 3, 'b1_conv2': 4}, 1e5)


def test_expand_file_prints_costs(tmp_path):
  model = tm.residual_model(width=8)
  src = str(tmp_path / 's.json')
  structure_files.write_structure(_SHRUNK, src)
  lines = []
  new = wm.expand_file(model, src, str(tmp_path / 'o.json'),
                       target_cost='original', print_fn=lines.append)
  assert 'cost before' in lines[0] and 'after' in lines[0]
  assert json.load(open(str(tmp_path / 'o.json'))) == new
  with pytest.raises(ValueError, match='exactly one'):
    wm.expand_file(model, src, str(tmp_path / 'o.json'))


def test_command_line(tmp_path):
  model = tm.residual_model(width=8)
  model_path = str(tmp_path / 'm.keras')
  model.save(model_path)
  src = str(tmp_path / 's.json')
  structure_files.write_structure(_SHRUNK, src)
  out = str(tmp_path / 'o.json')
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.expand_structure',
       '--model=' + model_path, '--structure=' + src, '--output=' + out,
       '--target_cost=original', '--round_to=4'],
      capture_output=True, text=True, timeout=240,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'cost before' in proc.stdout
  new = json.load(open(out))
  assert new['b2_conv1'] == 0 and new['stem'] % 4 == 0
