"""Tests for the morph_net.tools.rebuild_model command line."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.structure import structure_files
from morph_net.surgery import rebuild
from morph_net.tools import rebuild_model
from morph_net.testing import surgery_models as tm

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _cli(args):
  proc = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.rebuild_model'] + args,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  return proc.returncode, proc.stdout, proc.stderr


def _trained_residual(tmp_path):
  """residual_model(width=8) whose stem group has 20 channels with gamma
  above 0.05, and b1_conv1 13; betas stay nonzero."""
  keras.utils.set_random_seed(0)  # Kernels: the outputs' errors depend on them.
  model = tm.residual_model(width=8)
  tm.randomize_batch_norms(model)
  for names, alive in ((('stem_bn', 'b1_conv2_bn'), 20), (('b1_conv1_bn',),
                                                          13)):
    for name in names:
      gamma = model.get_layer(name).gamma.numpy()
      gamma[alive:] = 0.01
      model.get_layer(name).gamma.assign(gamma)
  path = str(tmp_path / 'm.keras')
  model.save(path)
  return model, path


def _width(model, name):
  return int(model.get_layer(name).kernel.shape[-1])


def test_rebuild_from_a_structure_file(tmp_path):
  _, model_path = _trained_residual(tmp_path)
  src = str(tmp_path / 's.json')
  structure_files.write_structure(tm.SHRUNK_RESIDUAL, src)
  out = str(tmp_path / 'small.keras')
  code, stdout, stderr = _cli(['--model=' + model_path, '--structure=' + src,
                               '--output=' + out])
  assert code == 0, stderr[-2000:]
  small = keras.models.load_model(out)
  # b2_conv1 vanishes, and b2_conv2 after it: the residual branch is gone.
  assert {n: _width(small, n) for n in ('stem', 'b1_conv2', 'b1_conv1',
                                        'b2_proj')} == {
                                            'stem': 20, 'b1_conv2': 20,
                                            'b1_conv1': 13, 'b2_proj': 35}
  names = [l.name for l in small.layers]
  assert 'b2_conv1' not in names and 'b2_conv2' not in names
  assert small.count_params() == 6452
  assert 'parameters before: 134437  after: 6452  (wrote %s)' % out in stdout
  assert [f for f in os.listdir(tmp_path) if f.startswith('.tmp_')] == []


def test_rebuild_from_the_models_own_alive_channels(tmp_path):
  model, model_path = _trained_residual(tmp_path)
  out = str(tmp_path / 'small.keras')
  code, _, stderr = _cli(['--model=' + model_path, '--threshold=0.05',
                          '--output=' + out])
  assert code == 0, stderr[-2000:]
  small = keras.models.load_model(out)
  assert (_width(small, 'stem'), _width(small, 'b1_conv1')) == (20, 13)
  np.testing.assert_array_equal(small.get_layer('stem').kernel.numpy(),
                                model.get_layer('stem').kernel.numpy()[
                                    ..., :20])
  # The removed channels' constants are folded: the outputs are close to
  # those of the model with its dead channels' gammas at exactly 0 (its
  # 3x3 convs pad with zeros, so not equal at the borders).
  for name in ('stem_bn', 'b1_conv2_bn', 'b1_conv1_bn'):
    gamma = model.get_layer(name).gamma.numpy()
    gamma[gamma == np.float32(0.01)] = 0.0
    model.get_layer(name).gamma.assign(gamma)
  data = np.random.RandomState(0).normal(size=(2, 16, 16, 3))
  expected = model.predict(data, verbose=0)
  unfolded = rebuild.rebuild(model, {'stem': 20, 'b1_conv2': 20,
                                     'b1_conv1': 13}, transfer_weights=True,
                             fold_constants=False)
  folded_error = np.max(np.abs(small.predict(data, verbose=0) - expected))
  unfolded_error = np.max(np.abs(unfolded.predict(data, verbose=0) -
                                 expected))
  # Seeds 0-4 of the kernels: folded 0.0039-0.0074, unfolded 0.096-0.35.
  assert folded_error < 0.01
  assert unfolded_error > 10 * folded_error


def test_a_growing_group_gets_fresh_weights_after_the_old_ones(tmp_path):
  model = tm.residual_model()
  out = str(tmp_path / 'wide.keras')
  lines = []
  wide = rebuild_model.rebuild_to_file(model, {'b1_conv1': 9}, out,
                                       print_fn=lines.append)
  assert lines == ['parameters before: %d  after: %d  (wrote %s)' % (
      model.count_params(), wide.count_params(), out)]
  old = model.get_layer('b1_conv1').kernel.numpy()
  new = keras.models.load_model(out).get_layer('b1_conv1').kernel.numpy()
  assert new.shape == (3, 3, 8, 9)
  np.testing.assert_array_equal(new[..., :6], old)
  old_next = model.get_layer('b1_conv2').kernel.numpy()
  new_next = wide.get_layer('b1_conv2').kernel.numpy()
  np.testing.assert_array_equal(new_next[:, :, :6], old_next)


_EXPANDED = {'stem': 30, 'b1_conv2': 30, 'b1_conv1': 20}


def _alive_counts(model, threshold=0.05):
  from morph_net.keras import model_regularizer  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  regularizer = model_regularizer.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=threshold)
  counts = regularizer.alive_counts()
  return {name: counts[name] for name in _EXPANDED}


def test_an_expanded_structure_copies_only_the_alive_channels(tmp_path):
  """Wider than the alive channels, narrower than the model: with the
  threshold, the dead channels (gamma 0.01) are not copied, so the rebuilt
  model has the structure's alive counts (copying them left 20 and 13)."""
  model, model_path = _trained_residual(tmp_path)
  src = str(tmp_path / 'expanded.json')
  structure_files.write_structure(_EXPANDED, src)
  out = str(tmp_path / 'wide.keras')
  code, _, stderr = _cli(['--model=' + model_path, '--structure=' + src,
                          '--threshold=0.05', '--output=' + out])
  assert code == 0, stderr[-2000:]
  wide = keras.models.load_model(out)
  assert _alive_counts(wide) == _EXPANDED
  np.testing.assert_array_equal(
      wide.get_layer('b1_conv1').kernel.numpy()[:, :, :20, :13],
      model.get_layer('b1_conv1').kernel.numpy()[:, :, :20, :13])
  np.testing.assert_array_equal(wide.get_layer('stem_bn').gamma.numpy()[20:],
                                np.ones([10], np.float32))
  copied = rebuild.rebuild(model, _EXPANDED, transfer_weights=True,
                           on_growth='initialize')
  assert _alive_counts(copied) == {'stem': 20, 'b1_conv2': 20,
                                   'b1_conv1': 13}


def test_fewer_alive_channels_than_the_width_names_on_growth(tmp_path):
  model, _ = _trained_residual(tmp_path)
  masks = {'b1_conv1': np.arange(48) < 13}
  with pytest.raises(errors.WeightTransferError) as e:
    rebuild.rebuild(model, {'b1_conv1': 20}, transfer_weights=True,
                    alive_masks=masks)
  assert str(e.value) == (
      "alive_masks['b1_conv1'] has 13 of 48 channels alive, but the "
      "structure gives width 20. Pass on_growth='initialize' to copy the "
      'alive channels and initialize the others (an expanded structure).')


@pytest.mark.parametrize('args,code,message', [
    (['--structure=s.json', '--output=o.keras'], 1,
     'Pass exactly one of --model and --builder.'),
    (['--model=m.keras', '--output=small.h5'], 1,
     "--output must name a .keras file. Received: 'small.h5'"),
    (['--model=nowhere.keras', '--output=o.keras'], 2,
     'rebuild_model: error: Invalid value for flag --model: no such file: '
     'nowhere.keras'),
])
def test_usage_and_input_errors(args, code, message):
  status, _, stderr = _cli(args)
  assert status == code
  assert message in stderr
  assert 'Traceback' not in stderr


def test_a_structure_that_does_not_fit_is_one_line(tmp_path):
  model_path = str(tmp_path / 'm.keras')
  tm.residual_model().save(model_path)
  src = str(tmp_path / 's.json')
  structure_files.write_structure({'stem': 4}, src)
  out = str(tmp_path / 'o.keras')
  code, _, stderr = _cli(['--model=' + model_path, '--structure=' + src,
                          '--output=' + out])
  assert code == 2
  assert stderr.strip().splitlines()[-1] == (
      "rebuild_model: error: Layers ['stem', 'b1_conv2'] form one channel "
      'group (their outputs are added, multiplied or normalised together) '
      'and must have equal widths. Received: stem=4, b1_conv2=8. Give every '
      'layer of the group the same width.')
  assert not os.path.exists(out)
