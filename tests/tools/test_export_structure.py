"""Tests for morph_net.tools.export_structure."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net.testing import surgery_models as tm
from morph_net.tools import export_structure

_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='',
            PYTHONPATH=os.path.dirname(__file__) + os.pathsep +
            os.environ.get('PYTHONPATH', ''))


def _kill(model):
  model.get_layer('b1_conv1_bn').gamma.assign(
      np.array([1, 0, 0, 1, 1, 0], 'float32'))


def test_export_from_keras_file(tmp_path):
  model = tm.residual_model()
  _kill(model)
  path = str(tmp_path / 'm.keras')
  model.save(path)
  out = str(tmp_path / 'structure.json')
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.export_structure',
       '--model=' + path, '--output=' + out], capture_output=True,
      text=True, timeout=240, env=_ENV)
  assert proc.returncode == 0, proc.stderr[-2000:]
  data = json.load(open(out))
  assert data['b1_conv1'] == 3
  assert data['stem'] == 8 and data['b2_proj'] == 12
  assert 'logits' not in data  # Not regularized by a gamma regularizer.
  assert list(data) == sorted(data)


def test_export_from_checkpoint_and_builder(tmp_path):
  model = tm.residual_model()
  _kill(model)
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
  built = tm.residual_model()
  export_structure.restore_checkpoint(built, prefix)
  counts = export_structure.export(
      built, str(tmp_path / 's.json'), None, 1e-3)
  assert counts['b1_conv1'] == 3


def test_checkpoint_of_other_model_raises(tmp_path):
  prefix = tf.train.Checkpoint(model=tm.residual_model()).write(
      str(tmp_path / 'ckpt'))
  with pytest.raises(export_structure.CheckpointMismatchError,
                     match='inception'):
    export_structure.restore_checkpoint(tm.inception_model(), prefix)


def test_checkpoint_with_other_widths_raises(tmp_path):
  prefix = tf.train.Checkpoint(model=tm.residual_model()).write(
      str(tmp_path / 'ckpt'))
  with pytest.raises(export_structure.CheckpointMismatchError,
                     match='disagrees|does not contain'):
    export_structure.restore_checkpoint(tm.residual_model(width=2), prefix)


def test_bad_builder_spec():
  with pytest.raises(ValueError, match="'module:function'"):
    export_structure.load_builder('nocolon')


@pytest.mark.parametrize('args,message', [
    (['--model=m.keras'], '--output is required.'),
    (['--output=o.json'], 'Pass exactly one of --model and --builder.'),
])
def test_usage_errors(args, message):
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.export_structure'] + args,
      capture_output=True, text=True, timeout=240, env=_ENV)
  assert proc.returncode == 1
  assert message in proc.stderr
