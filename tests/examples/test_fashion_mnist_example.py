"""The Fashion-MNIST example runs end to end on a tiny budget."""

import json
import os
import subprocess
import sys

import pytest

from examples import datasets

_EXAMPLE = os.path.join(os.path.dirname(__file__), '..', '..', 'examples',
                        'fashion_mnist_keras.py')


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
@pytest.mark.parametrize('regularizer', ['gamma_flops',
                                         'logistic_sigmoid_flops'])
def test_example_trains_and_writes_structure(regularizer, tmp_path):
  result = subprocess.run(
      [sys.executable, _EXAMPLE, '--regularizer=' + regularizer,
       '--epochs=1', '--train_examples=256', '--batch_size=64',
       '--output_dir=' + str(tmp_path)],
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'epoch 1: FLOPs = ' in result.stdout
  with open(tmp_path / 'learned_structure' / 'alive') as f:
    structure = json.load(f)
  assert sorted(structure) == ['conv1', 'conv2', 'conv3']


def test_example_help_lists_flags():
  result = subprocess.run([sys.executable, _EXAMPLE, '--helpfull'],
                          capture_output=True, text=True, timeout=300,
                          check=False)
  assert '--regularizer' in result.stdout
  assert 'logistic_sigmoid_' in result.stdout
