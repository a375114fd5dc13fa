"""A MorphNet-compiled model saves and loads in a fresh process.

`saving_check.py save` trains two steps with `wrap_loss` and `metrics()`,
with ModelCheckpoint writing `.keras` and `.weights.h5` files, and saves the
compiled model and an uncompiled copy; `saving_check.py load` loads them in
a new process, where only `morph_net.keras` is imported, evaluates the
detached loss, re-attaches a regularizer and trains on. Keras 3 and tf_keras.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
_SCRIPT = os.path.join(_HERE, 'saving_check.py')
STRENGTH = 1e-4  # saving_check.STRENGTH
# conv1 8x8x3 -> 8x8x4 (3x3, same) and logits 4 -> 3: 2*64*9*3*4 + 2*4*3.
FLOPS = 13848


def _run(phase, directory, legacy):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1' if legacy else '0',
             CUDA_VISIBLE_DEVICES='',
             PYTHONPATH=_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  result = subprocess.run([sys.executable, _SCRIPT, phase, str(directory)],
                          env=env, capture_output=True, text=True,
                          timeout=240, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('legacy', [False, True], ids=['keras3', 'tf_keras'])
def test_save_and_load_in_a_fresh_process(legacy, tmp_path):
  if legacy:
    pytest.importorskip('tf_keras')
  saved = _run('save', tmp_path, legacy)
  loaded = _run('load', tmp_path, legacy)
  assert saved['cost'] == FLOPS

  # Compiled, with the MorphNet loss, which has no regularizer after loading
  # and is the data loss alone; the MorphNet metrics report NaN.
  assert loaded['compiled'] == {'compiled': True, 'loss': 'MorphNetLoss',
                                'attached': False}
  assert loaded['detached']['loss'] == pytest.approx(saved['data_loss'],
                                                     rel=1e-6)
  assert loaded['data_loss'] == pytest.approx(saved['data_loss'], rel=1e-6)
  assert np.isnan(loaded['detached']['flops'])
  assert np.isnan(loaded['detached']['morph_net_loss'])
  assert loaded['iterations'] == 2  # The optimizer state was saved.

  # Re-attached: the loss, the regularization loss and the cost metric.
  assert loaded['attached_parts'] == 3
  assert loaded['term'] == pytest.approx(saved['term'], rel=1e-6)
  assert loaded['attached']['loss'] == pytest.approx(
      saved['data_loss'] + STRENGTH * saved['term'], rel=1e-5)
  assert loaded['attached']['morph_net_loss'] == pytest.approx(
      STRENGTH * saved['term'], rel=1e-6)
  assert loaded['attached']['flops'] == FLOPS
  assert loaded['iterations_after_fit'] == 4  # Training goes on.

  # The uncompiled copy loads uncompiled; the ModelCheckpoint .keras file
  # loads compiled like the model; all give the saved model's outputs, and
  # so do the ModelCheckpoint weights loaded into a newly built model.
  assert loaded['plain']['compiled'] is False
  assert loaded['checkpoint'] == loaded['compiled']
  for name in ('plain', 'checkpoint', 'weights'):
    np.testing.assert_allclose(loaded['predictions'][name],
                               saved['predictions'], rtol=1e-6, atol=1e-7)
