"""Tests for the morph_net.tools.expand_structure command line."""

import json
import os
import subprocess
import sys

import keras
import pytest

from morph_net.structure import structure_files
from morph_net.testing import surgery_models as tm

_SHRUNK = tm.SHRUNK_RESIDUAL


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


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


@pytest.mark.parametrize('args,message', [
    ([], 'Pass exactly one of --multiplier and --target_cost.'),
    (['--target_cost=original'], '--target_cost needs --model.'),
])
def test_usage_errors(args, message):
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.expand_structure',
       '--structure=s.json', '--output=o.json'] + args,
      capture_output=True, text=True, timeout=240,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  assert proc.returncode == 1
  assert message in proc.stderr
