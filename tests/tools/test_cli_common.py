"""Tests of the command-line programs' shared parts (in process):
morph_net.tools.cli_common and morph_net.tools.model_source."""

import sys

from absl import app
from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.testing import surgery_models as tm
from morph_net.tools import cli_common
from morph_net.tools import expand_structure
from morph_net.tools import export_structure
from morph_net.tools import model_source


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _flags(define, *args):
  """A fresh FlagValues with `define`'s flags, parsed from `args`."""
  flag_values = flags.FlagValues()
  define(flag_values)
  flag_values(['program'] + list(args))
  return flag_values


def test_input_shape_is_parsed_and_checked():
  assert model_source.parse_input_shape('32,24,3') == (32, 24, 3)
  for text in ('32,x,3', '', '32,0,3'):
    with pytest.raises(errors.InvalidArgumentError,
                       match=r'Invalid value for flag --input_shape\. '
                       r'Expected the input shape without batch as positive '
                       r"integers, e\.g\. 224,224,3\. Received: '%s'" % text):
      model_source.parse_input_shape(text)
  with pytest.raises(flags.IllegalFlagValueError,
                     match="Received: '32,x,3'"):
    _flags(export_structure.define_flags, '--input_shape=32,x,3')


def test_target_cost_flag_is_checked():
  assert expand_structure.parse_target_cost('2e9') == 2e9
  assert expand_structure.parse_target_cost('original') == 'original'
  with pytest.raises(flags.IllegalFlagValueError,
                     match=r"Expected a number or 'original'\. Received: "
                     r"'half'"):
    _flags(expand_structure.define_flags, '--structure=s', '--output=o',
           '--target_cost=half')


def test_unknown_input_size_asks_for_the_flag():
  model = tm.fully_convolutional_model()
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Model 'fcn' \(Functional\) has an unknown input "
                     r'size \(None, None, None, 3\); costs depend on the '
                     r'spatial size\. Pass --input_shape=H,W,C with the size '
                     r'you train or serve at\.'):
    model_source.check_input_size(model, [])
  assert model_source.check_input_size(model, ['16,16,3']) == (16, 16, 3)
  assert model_source.check_input_size(model, ['4,4,3', '5,5,1']) == [
      (4, 4, 3), (5, 5, 1)]
  assert model_source.check_input_size(tm.residual_model(), []) is None


def test_subclassed_model_needs_the_flag():

  class Subclassed(keras.Model):

    def call(self, x):
      return x

  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Model 'subclassed' \(Subclassed\) has no "
                     r'recorded input shape; .*Pass --input_shape=H,W,C'):
    model_source.check_input_size(Subclassed(name='subclassed'), [])


def test_missing_files_are_named(tmp_path):
  path = str(tmp_path / 'missing.keras')
  with pytest.raises(errors.InvalidArgumentError,
                     match='Invalid value for flag --model: no such file: ' +
                     path):
    model_source.load_model(model_path=path)
  with pytest.raises(errors.InvalidArgumentError,
                     match='Invalid value for flag --checkpoint: no such '
                     'file: .*missing.weights.h5'):
    model_source.restore_checkpoint(tm.residual_model(),
                                    str(tmp_path / 'missing.weights.h5'))
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Invalid value for flag --checkpoint: no TF '
                     r'checkpoint at .*ckpt-7 \(a prefix such as '
                     r'/train/ckpt-100, whose \.index file exists, or a '
                     r'directory holding one\) and no Keras weights file '
                     r'\(\.weights\.h5, \.h5, \.keras\)\.'):
    model_source.restore_checkpoint(tm.residual_model(),
                                    str(tmp_path / 'ckpt-7'))
  with pytest.raises(errors.InvalidArgumentError,
                     match='Invalid value for flag --gin_file: no such file'):
    model_source.load_model(builder='x:y',
                            gin_files=[str(tmp_path / 'missing.gin')])


def test_file_that_is_not_a_model_is_refused(tmp_path):
  path = tmp_path / 'notes.keras'
  path.write_text('not a model')
  with pytest.raises(errors.InvalidArgumentError,
                     match='Invalid value for flag --model: cannot load .*'
                     'notes.keras as a keras model: '):
    model_source.load_model(model_path=str(path))


def test_builder_spec_errors():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid value for flag --builder: cannot import "
                     r"module 'no_such_module_xyz' \(No module named"):
    model_source.load_builder('no_such_module_xyz:build')
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid value for flag --builder: module "
                     r"'morph_net.testing.surgery_models' has no "
                     r"'no_builder'\."):
    model_source.load_builder('morph_net.testing.surgery_models:no_builder')
  assert model_source.load_builder(
      'morph_net.testing.surgery_models:residual_model') is tm.residual_model


@pytest.mark.parametrize('suffix', ['.weights.h5', '.keras'])
def test_keras_weight_files_restore_a_built_model(tmp_path, suffix):
  trained = tm.residual_model()
  tm.randomize_batch_norms(trained, seed=3)
  path = str(tmp_path / ('trained' + suffix))
  if suffix == '.keras':
    trained.save(path)
  else:
    trained.save_weights(path)
  built = tm.residual_model()
  assert model_source.restore_checkpoint(built, path) is None
  for mine, theirs in zip(built.get_weights(), trained.get_weights()):
    np.testing.assert_array_equal(mine, theirs)
  with pytest.raises(errors.CheckpointMismatchError,
                     match=r"Weights file .*trained%s does not fit model "
                     r"'residual': .*The builder must build the model \(same "
                     r'layers and widths\) that was trained\.' %
                     suffix.replace('.', r'\.')):
    model_source.restore_checkpoint(tm.residual_model(width=2), path)


def test_tf_checkpoint_directory_restores_its_latest(tmp_path):
  trained = tm.residual_model()
  tm.randomize_batch_norms(trained, seed=4)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=trained),
                                       str(tmp_path), max_to_keep=1)
  manager.save()
  built = tm.residual_model()
  model_source.restore_checkpoint(built, str(tmp_path))
  np.testing.assert_array_equal(built.get_layer('stem_bn').get_weights()[0],
                                trained.get_layer('stem_bn').get_weights()[0])


def test_latency_flags_go_to_latency_regularizers_only():
  latency = latency_regularizer.GammaLatencyRegularizer
  flops = flop_regularizer.GammaFlopsRegularizer
  assert cli_common.regularizer_kwargs(latency, 'V100', None) == {
      'hardware': 'V100', 'batch_size': 1}
  assert cli_common.regularizer_kwargs(latency, '/p/t4.json', 8) == {
      'hardware': '/p/t4.json', 'batch_size': 8}
  assert cli_common.regularizer_kwargs(flops, None, None) == {}
  with pytest.raises(app.UsageError,
                     match=r'--regularizer=GammaLatencyRegularizer costs '
                     r'latency on a device: pass --hardware \(a device name '
                     r'such as V100, or a device profile path\)\.'):
    cli_common.regularizer_kwargs(latency, None, 8)
  with pytest.raises(app.UsageError,
                     match=r'--hardware and --batch_size apply to latency '
                     r'regularizers; --regularizer=GammaFlopsRegularizer '
                     r'does not cost latency\.'):
    cli_common.regularizer_kwargs(flops, 'V100', None)


def test_regularizer_from_the_flags():
  values = _flags(export_structure.define_flags, '--input_shape=16,16,3',
                  '--regularizer=GammaLatencyRegularizer', '--hardware=T4',
                  '--batch_size=2', '--threshold=0.01')
  regularizer = cli_common.regularizer_from_flags(tm.fully_convolutional_model(),
                                                  values)
  assert isinstance(regularizer.network_regularizer,
                    latency_regularizer.GammaLatencyRegularizer)
  assert regularizer.traced.input_signature[0].shape.as_list() == [
      None, 16, 16, 3]
  with pytest.raises(errors.InvalidArgumentError,
                     match="Did you mean 'GammaFlopsRegularizer'"):
    cli_common.build_regularizer(tm.residual_model(), 'GamaFlopsRegularizer',
                                 1e-3)


@pytest.mark.parametrize('args,required,message', [
    (['--model=m', '--builder=b:f'], True,
     'Pass exactly one of --model and --builder.'),
    ([], True, 'Pass exactly one of --model and --builder.'),
    (['--model=m', '--builder=b:f'], False,
     'Pass at most one of --model and --builder.'),
    (['--model=m', '--checkpoint=c'], True,
     '--checkpoint needs --builder (a saved --model holds its weights and '
     'configuration).'),
    (['--gin_param=a.b=1'], False, '--gin_param needs --builder'),
])
def test_model_flag_combinations(args, required, message):
  values = _flags(export_structure.define_flags, *args)
  with pytest.raises(app.UsageError) as raised:
    cli_common.check_model_flags(required, values)
  assert message in str(raised.value)


def test_model_flags_name_a_model_or_none():
  assert cli_common.check_model_flags(
      False, _flags(export_structure.define_flags)) is False
  assert cli_common.check_model_flags(
      True, _flags(export_structure.define_flags, '--builder=b:f',
                   '--checkpoint=c')) is True


def test_program_flags_are_listed_under_the_program():
  assert cli_common.flag_module_name('__main__') == sys.argv[0]
  assert cli_common.flag_module_name('a.b') == 'a.b'
