"""MultiWorkerMirroredStrategy with two worker processes on this machine.

Each test starts two `multi_worker_check.py` workers with TF_CONFIG on free
localhost ports and waits for both, bounded in time. With tf_keras `fit`
and with a Keras 3 custom training loop, the MorphNet term and the gamma
update of one step equal one device's (the term is added once per global
batch, not once per worker), and only the chief writes the structure
files. Keras 3's own `fit` does not run under this strategy (upstream:
keras-team/keras#20585, tensorflow/tensorflow#72388); the last test measures
that on a model without MorphNet.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
_SCRIPT = os.path.join(_HERE, 'multi_worker_check.py')
_TIMEOUT = 120  # Seconds for both workers (about 30-45 s here).

# multi_worker_check: gammas [0.5, -1, 1.5, 2], strength 1e-4, SGD lr 0.1.
# conv1 (8x8, 3x3, 3 -> 4) costs 2*8*8*9 FLOPs per channel pair, and each of
# its 4 gammas meets 3 input channels; the dense (4 -> 3) 2 per pair.
_GAMMA = [0.5, -1.0, 1.5, 2.0]
_PER_GAMMA = 2 * 8 * 8 * 9 * 3 + 2 * 3  # d term / d |gamma_i| = 3462.
_TERM = _PER_GAMMA * sum(abs(g) for g in _GAMMA)  # 17310.
_STEP = 0.1 * 1e-4 * _PER_GAMMA  # lr * strength * 3462 = 0.03462.


def _free_ports(count):
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(('localhost', 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  except OSError as e:
    pytest.skip('cannot open localhost ports for two TF workers: %s' % e)
  finally:
    for s in sockets:
      s.close()


def _run_workers(mode, log_dir, legacy):
  """Runs both workers; returns [(returncode, stdout, stderr)] by index."""
  workers = ['localhost:%d' % port for port in _free_ports(2)]
  processes = []
  try:
    for index in range(2):
      env = dict(
          os.environ, CUDA_VISIBLE_DEVICES='',
          TF_USE_LEGACY_KERAS='1' if legacy else '0',
          PYTHONPATH=_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
          TF_CONFIG=json.dumps({'cluster': {'worker': workers},
                                'task': {'type': 'worker', 'index': index}}))
      processes.append(subprocess.Popen(
          [sys.executable, _SCRIPT, mode, str(log_dir)], env=env,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for process in processes:
      stdout, stderr = process.communicate(timeout=_TIMEOUT)
      results.append((process.returncode, stdout, stderr))
    return results
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.communicate()


def _outputs(results):
  outputs = []
  for code, stdout, stderr in results:
    assert code == 0, stderr[-4000:]
    outputs.append(json.loads(stdout.strip().splitlines()[-1]))
  return outputs


def _check_same_as_one_device(outputs):
  assert [o['is_chief'] for o in outputs] == [True, False]
  expected_gamma = [g - _STEP if g > 0 else g + _STEP for g in _GAMMA]
  for output in outputs:
    assert output['replicas'] == 2
    assert output['term'] == output['single_term'] == _TERM
    assert output['gamma'] == pytest.approx(output['single_gamma'],
                                            rel=1e-6)
    assert output['gamma'] == pytest.approx(expected_gamma, rel=1e-6)


def test_tf_keras_fit_on_two_workers(tmp_path):
  pytest.importorskip('tf_keras')
  outputs = _outputs(_run_workers('fit', tmp_path, legacy=True))
  _check_same_as_one_device(outputs)
  # Only the chief wrote, and nothing but the two files (atomic writes
  # leave no temporary file behind).
  assert outputs[0]['files'] == ['learned_structure/alive',
                                 'learned_structure/alive_1']
  assert outputs[1]['files'] == []
  structure_dir = tmp_path / 'worker0' / 'learned_structure'
  assert json.loads((structure_dir / 'alive').read_text()) == {'conv1': 4}
  assert not (tmp_path / 'worker1').exists()


def test_keras3_custom_loop_on_two_workers(tmp_path):
  _check_same_as_one_device(
      _outputs(_run_workers('loop', tmp_path, legacy=False)))


def test_keras3_fit_does_not_run_on_two_workers_upstream(tmp_path):
  # No MorphNet involved: Keras 3's fit itself fails under the strategy. If
  # this test fails because fit now runs, Keras fixed it: support and test
  # MorphNet with Keras 3 fit there too, and update the README.
  results = _run_workers('plain_fit', tmp_path, legacy=False)
  for code, _, stderr in results:
    assert code != 0
    assert 'ValueError: Attempt to convert a value (PerReplica:{' in stderr
    assert ("with an unsupported type (<class 'tensorflow.python.distribute."
            "values.PerReplica'>) to a Tensor.") in stderr
