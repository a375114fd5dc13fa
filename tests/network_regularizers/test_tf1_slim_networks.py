"""Costs of tf_slim networks in TF1 mode equal counts made without MorphNet.

resnet_v1_50 (residual adds), inception_v2 (concats, a separable first conv)
and a MobileNet-like depthwise chain, with Gamma and GroupLasso regularizers,
at initialization and with random dead channels; see tf1_slim_check.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'tf1_slim_check.py')
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHECKS = [
    'resnet_v1_50 gamma flops', 'resnet_v1_50 group lasso flops',
    'resnet_v1_50 model size', 'resnet_v1_50 gamma flops, dead channels',
    'resnet_v1_50 group lasso flops, dead filters',
    'inception_v2 gamma flops', 'inception_v2 group lasso flops',
    'inception_v2 model size', 'inception_v2 gamma flops, dead channels',
    'separable gamma flops', 'separable model size',
    'separable gamma flops, dead channels',
]


@pytest.fixture(scope='module')
def results():
  pytest.importorskip('tf_slim')
  # The checkout under test comes first, whatever morph_net is installed.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [_ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
                 if p]), TF_CPP_MIN_LOG_LEVEL='3')
  process = subprocess.run([sys.executable, _SCRIPT], env=env,
                           capture_output=True, text=True, timeout=900,
                           check=False)
  assert process.returncode == 0, process.stderr[-4000:]
  return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('check', CHECKS)
def test_cost_equals_independent_count(results, check):
  morph_net_cost, independent = results[check]
  assert independent > 0
  # MorphNet's costs are float32: the correctly rounded exact count.
  assert morph_net_cost == float(np.float32(independent)), check


def test_dead_channels_lower_the_cost(results):
  for network in ('resnet_v1_50 gamma flops', 'inception_v2 gamma flops',
                  'separable gamma flops'):
    assert results[network + ', dead channels'][1] < results[network][1]
