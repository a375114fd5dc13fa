"""Tests for the morph_net.tools.expand_structure command line."""

import json
import os
import subprocess
import sys

import keras
import pytest

from morph_net import keras as morph_keras
from morph_net.network_regularizers import latency_regularizer
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


def _cli(args):
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.expand_structure'] + args,
      capture_output=True, text=True, timeout=240,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  return proc.returncode, proc.stdout, proc.stderr


def test_latency_target_on_a_model_saved_compiled_with_morph_net(tmp_path):
  model = tm.residual_model(width=8)
  regularizer = morph_keras.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware='T4', batch_size=8)
  model.compile(optimizer='adam', loss=regularizer.wrap_loss(
      'sparse_categorical_crossentropy'), metrics=regularizer.metrics())
  model_path = str(tmp_path / 'compiled.keras')
  model.save(model_path)
  src = str(tmp_path / 's.json')
  structure_files.write_structure(_SHRUNK, src)
  out = str(tmp_path / 'o.json')
  code, stdout, stderr = _cli([
      '--model=' + model_path, '--structure=' + src, '--output=' + out,
      '--target_cost=original', '--regularizer=GammaLatencyRegularizer',
      '--hardware=T4', '--batch_size=8'])
  assert code == 0, stderr[-2000:]
  # The costs printed are the latency regularizer's (ns on a T4 at batch
  # 8), not FLOPs.
  cost = morph_keras.StructureCost(regularizer)
  new = json.load(open(out))
  assert new['b2_conv1'] == 0
  assert ('cost before: %.6g  after: %.6g' % (cost(_SHRUNK), cost(new))
          in stdout)
  assert ', target %.6g)' % float(regularizer.cost()) in stdout
  assert abs(cost(new) - float(regularizer.cost())) <= (
      0.01 * float(regularizer.cost()))


@pytest.mark.parametrize('structure,message', [
    ({'conv1/Conv2D': 4},
     "Structure names layer 'conv1/Conv2D', but no such layer in model "
     "'residual'. Structure layers without a width of their own in the "
     "model: ['conv1/Conv2D']."),
    (None, 'Invalid value for flag --structure: no such file: '),
])
def test_input_errors_are_one_line_with_status_2(tmp_path, structure,
                                                 message):
  model_path = str(tmp_path / 'm.keras')
  tm.residual_model().save(model_path)
  src = str(tmp_path / 's.json')
  if structure is not None:
    structure_files.write_structure(structure, src)
  code, _, stderr = _cli(['--model=' + model_path, '--structure=' + src,
                          '--output=%s/o.json' % tmp_path,
                          '--multiplier=2'])
  assert code == 2
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('expand_structure: error: ')
  assert message in last
  assert 'Traceback' not in stderr
