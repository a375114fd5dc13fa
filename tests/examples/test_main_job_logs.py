"""The main job's output: no TensorFlow start-up notes, no INFO logs.

examples/fashion_mnist_keras.py on a tiny budget prints its own lines and
Keras's plain progress lines; TensorFlow's "failed call to cuInit" (on a
machine without a GPU) and MorphNet's INFO logs (e.g. "OpGroup not
regularized due to blacklist: ... logits/MatMul") show only with
--verbosity.
"""

import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
_TINY = ['--epochs=1', '--train_examples=128', '--batch_size=64',
         '--finetune_epochs=0', '--latency_repeats=0']


def _main_job(tmp_path, *args):
  if not os.path.exists(_FASHION_MNIST):
    pytest.skip('needs dataset-fashion-mnist (scripts/install.sh)')
  result = subprocess.run(
      [sys.executable, 'examples/fashion_mnist_keras.py'] + _TINY +
      ['--output_dir=%s' % tmp_path] + list(args), cwd=_ROOT,
      capture_output=True, text=True, timeout=600, check=False,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=_ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                              '')))
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_main_job_prints_no_cuinit_line_and_no_info_logs(tmp_path):
  result = _main_job(tmp_path)
  output = result.stdout + result.stderr
  assert 'cuInit' not in output
  assert 'OpGroup not regularized' not in output
  assert '\x1b' not in output  # Progress lines are plain text.
  assert result.stderr == ''
  assert result.stdout.startswith('GammaFlops: initial FLOPs = 14904832, ')


def test_verbosity_brings_the_logs_back(tmp_path):
  result = _main_job(tmp_path, '--verbosity=0')
  assert 'OpGroup not regularized due to blacklist' in result.stderr
  assert 'OpRegularizerManager found 68 ops and 3 sources.' in result.stderr
