"""benchmarks/cost_target.py on a tiny budget: train, evaluate, table."""

import json
import os
import subprocess
import sys

import pytest

from examples import datasets

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_BENCHMARK = os.path.join(_ROOT, 'benchmarks', 'cost_target.py')


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_one_run_trains_evaluates_and_is_cached(tmp_path):
  command = [sys.executable, _BENCHMARK, '--output_dir=%s' % tmp_path,
             '--architectures=resnet', '--resources=size', '--targets=0.6',
             '--seeds=3', '--train_examples=128', '--batch_size=64',
             '--max_epochs=1']
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  first = subprocess.run(command, capture_output=True, text=True, env=env,
                         timeout=900, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  with open(tmp_path / 'runs' / 'resnet_size_0.6_3.json') as f:
    record = json.load(f)
  assert record['epochs'] == 1 and len(record['epoch_costs']) == 1
  assert record['target_cost'] == pytest.approx(0.6 * record['initial_cost'])
  # The rebuilt model costs exactly what the trained one does.
  assert record['rebuilt_cost'] == record['final_cost_reloaded']
  assert record['final_cost_reloaded'] == pytest.approx(record['final_cost'])
  assert 0.0 <= record['rebuilt_accuracy'] <= 1.0
  assert 0.0 <= record['masked_accuracy'] <= 1.0
  assert record['threshold'] == 0.01
  table = (tmp_path / 'table.md').read_text()
  assert table.startswith('| architecture | resource | target | seed |')
  assert '| dead gammas 0 |' in table.splitlines()[0]
  assert '| resnet | size | 0.60 | 3 | 1 |' in table
  assert '1 runs: ' in table
  # A second invocation reuses the stored run.
  second = subprocess.run(command + ['--evaluate_only'], capture_output=True,
                          text=True, env=env, timeout=900, check=False)
  assert second.returncode == 0, second.stderr[-3000:]
  assert '| resnet | size | 0.60 | 3 | 1 |' in second.stdout


def test_dead_gammas_are_zeroed_in_nested_models_too():
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import cost_target  # pylint: disable=g-import-not-at-top
  inner_in = keras.Input((4, 4, 3))
  inner = keras.Model(inner_in, keras.layers.BatchNormalization(name='bn_in')(
      keras.layers.Conv2D(3, 1, name='c_in')(inner_in)), name='base')
  outer_in = keras.Input((4, 4, 3))
  outer = keras.Model(outer_in, keras.layers.BatchNormalization(
      name='bn_out')(inner(outer_in)))
  inner.get_layer('bn_in').gamma.assign([0.005, -0.01, 0.5])
  outer.get_layer('bn_out').gamma.assign([-0.02, 0.0, 0.01])
  assert cost_target._zero_dead_gammas(outer, 0.01) == 4  # pylint: disable=protected-access
  np.testing.assert_array_equal(
      inner.get_layer('bn_in').gamma.numpy(), np.float32([0.0, 0.0, 0.5]))
  np.testing.assert_array_equal(
      outer.get_layer('bn_out').gamma.numpy(),
      np.float32([-0.02, 0.0, 0.0]))
