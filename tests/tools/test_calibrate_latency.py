"""Tests for the morph_net.tools.calibrate_latency command line."""

import os
import subprocess
import sys

import keras
import pytest

from morph_net.network_regularizers import latency_profile
from morph_net.testing import latency_models


def _run(*args):
  return subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.calibrate_latency'] +
      list(args), capture_output=True, text=True, timeout=300,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))


def test_command_line(tmp_path):
  keras.backend.clear_session()
  model_path = str(tmp_path / 'm.keras')
  latency_models.padded_mobile_model((8, 8, 3)).save(model_path)
  output = str(tmp_path / 'profiles' / 'device.json')
  proc = _run('--model=' + model_path, '--output=' + output,
              '--batch_size=2', '--repeats=2', '--warmup=1',
              '--fractions=1,0.5', '--clock=cpu', '--model_structures=1',
              '--budget=64', '--multiples=1,8', '--max_attempts=2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  profile = latency_profile.LatencyProfile.load(output)
  assert profile.batch_size == 2
  assert profile.metadata['threads'] == {'intra_op': 1, 'inter_op': 1}
  assert profile.metadata['fractions'] == [1.0, 0.5]
  assert profile.metadata['layers'] == 9
  assert profile.metadata['clock'] == 'cpu'
  # x1, x0.5, one channel narrower per group (misaligned; x0.5 is the
  # same rounded to every multiple), one random structure and it rounded
  # up to 4.
  assert profile.metadata['whole_model_samples'] == 5
  assert profile.metadata['measurement']['budget'] == 64
  assert profile.metadata['measurement']['budget_source'] == 'given'
  assert profile.metadata['alignment']['candidates'] == [1, 8]
  assert profile.preferred_multiple in (1, 8)
  assert 'ns/FLOP' in proc.stdout
  assert 'preferred channel multiple' in proc.stdout
  assert 'timed in ' in proc.stdout and '(kernel budget 64, given)' in (
      proc.stdout)
  assert '9 layers of padded_mobile calibrated in' in proc.stdout


@pytest.mark.parametrize('args,message', [
    (['--fractions=0,2'], '--fractions must be numbers in (0, 1]; got 0,2.'),
    (['--batch_size=0'], '--batch_size and --repeats must be >= 1.'),
    (['--whole_model_share=1'], '--model_structures must be >= 0 and '
     '--whole_model_share in (0, 1).'),
    (['--multiples=1,0'], '--multiples must be integers >= 1; got 1,0.'),
])
def test_usage_errors(args, message):
  proc = _run('--model=m.keras', '--output=o.json', *args)
  assert proc.returncode == 1
  assert message in proc.stderr
