"""Tests for morph_net.tools.export_structure."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
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


def _cli(args, program='export_structure'):
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.' + program] + args,
      capture_output=True, text=True, timeout=240, env=_ENV)
  return proc.returncode, proc.stdout, proc.stderr


def test_export_from_builder_and_keras_weights_with_input_shape(tmp_path):
  # A fully convolutional model (no fixed input size) trained elsewhere,
  # whose weights ModelCheckpoint(save_weights_only=True) wrote.
  trained = tm.fully_convolutional_model()
  trained.get_layer('conv2_bn').gamma.assign([1, 0, 1, 0, 0, 1])
  weights = str(tmp_path / 'ckpt.weights.h5')
  trained.save_weights(weights)
  out = str(tmp_path / 'structure.json')
  code, stdout, stderr = _cli([
      '--builder=morph_net.testing.surgery_models:fully_convolutional_model',
      '--checkpoint=' + weights, '--input_shape=32,32,3',
      '--regularizer=GammaLatencyRegularizer', '--hardware=V100',
      '--batch_size=4', '--output=' + out])
  assert code == 0, stderr[-2000:]
  assert 'Wrote 2 layers to %s.' % out in stdout
  assert json.load(open(out)) == {'conv1': 4, 'conv2': 3}


def test_export_of_a_model_saved_compiled_with_morph_net(tmp_path):
  model = tm.residual_model()
  _kill(model)
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  model.compile(optimizer='sgd', loss=regularizer.wrap_loss(
      'sparse_categorical_crossentropy'), metrics=regularizer.metrics())
  path = str(tmp_path / 'compiled.keras')
  model.save(path)
  out = str(tmp_path / 'structure.json')
  code, _, stderr = _cli(['--model=' + path, '--output=' + out])
  assert code == 0, stderr[-2000:]
  assert json.load(open(out)) == regularizer.alive_counts()
  assert json.load(open(out))['b1_conv1'] == 3


@pytest.mark.parametrize('args,message', [
    (['--model={tmp}/missing.keras'],
     'Invalid value for flag --model: no such file: {tmp}/missing.keras'),
    (['--builder=morph_net.testing.surgery_models:fully_convolutional_model'],
     "Model 'fcn' (Functional) has an unknown input size (None, None, None, "
     '3); costs depend on the spatial size. Pass --input_shape=H,W,C with '
     'the size you train or serve at.'),
    (['--builder=morph_net.testing.surgery_models:residual_model',
      '--regularizer=GamaFlopsRegularizer'],
     "Did you mean 'GammaFlopsRegularizer'? Received: "
     "regularizer='GamaFlopsRegularizer'"),
])
def test_input_errors_are_one_line_with_status_2(tmp_path, args, message):
  args = [a.format(tmp=tmp_path) for a in args]
  code, _, stderr = _cli(args + ['--output=%s/o.json' % tmp_path])
  assert code == 2
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('export_structure: error: ')
  assert message.format(tmp=tmp_path) in last
  assert 'Traceback' not in stderr


def test_checkpoint_without_builder_is_a_usage_error():
  code, _, stderr = _cli(['--model=m.keras', '--checkpoint=c.weights.h5',
                          '--output=o.json'])
  assert code == 1
  assert ('--checkpoint needs --builder (a saved --model holds its weights '
          'and configuration).') in stderr


def test_help_documents_the_flags_and_exit_status():
  code, stdout, _ = _cli(['--help'])
  assert code == 1  # absl's --help status.
  for text in ('--model:', '--builder:', '--checkpoint:', '.weights.h5',
               '--input_shape:', '--regularizer:', '--threshold:',
               '--hardware:', '--batch_size:', '--output:',
               'Exit status: 0 on success; 1 for a usage error'):
    assert text in stdout
