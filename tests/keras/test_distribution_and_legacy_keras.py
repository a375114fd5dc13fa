"""MirroredStrategy and tf_keras checks, run in subprocesses.

Logical CPU devices and TF_USE_LEGACY_KERAS must be set before TensorFlow
initialises, so each check runs `distributed_check.py` in a fresh process.
"""

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = os.path.join(os.path.dirname(__file__), 'distributed_check.py')
# The package under test, before any installed copy.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _run(env_overrides):
  env = dict(os.environ, **env_overrides)
  env['PYTHONPATH'] = _ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')
  result = subprocess.run([sys.executable, _SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _check(values):
  term, cost, gamma = values['mirrored']
  single_term, single_cost, single_gamma = values['single']
  assert values['replicas'] == 2
  assert term == pytest.approx(single_term, rel=1e-6)
  assert cost == pytest.approx(single_cost, rel=1e-6)
  # conv1: 2*8*8*9 per pair; term = C * (3 * sum|gamma|) + dense 2*3*sum|g|.
  assert single_term == pytest.approx(2 * 8 * 8 * 9 * 3 * 5.0 + 2 * 3 * 5.0)
  # One SGD step from the same weights and data moves gamma identically: the
  # term is added once per global batch, not once per replica.
  assert gamma == pytest.approx(single_gamma, rel=1e-5)
  assert gamma != pytest.approx([0.5, 1.0, 1.5, 2.0], rel=1e-7)
  # CostTargetCallback assigns the strength from the host under the
  # strategy: three updates, the variable holds the controller's value, the
  # same as on one device (the cost stays at twice the target: it grows).
  strengths, final = values['target_mirrored']
  assert len(strengths) == 3 and strengths[-1] == pytest.approx(final)
  assert strengths == pytest.approx(values['target_single'][0], rel=1e-6)
  assert strengths[0] < strengths[1] < strengths[2]


def test_mirrored_strategy_gives_same_term_and_trains_keras3():
  _check(_run({'TF_USE_LEGACY_KERAS': '0'}))


def test_mirrored_strategy_and_fit_with_tf_keras():
  pytest.importorskip('tf_keras')
  _check(_run({'TF_USE_LEGACY_KERAS': '1'}))
