"""The experiment driver: the --smoke cycle end to end, and its pieces."""

import glob
import json
import os
import subprocess
import sys

import pytest

from morph_net.network_regularizers import registry

from examples.experiment import cycle
from examples.experiment import models
from examples.experiment import report
from examples.experiment import run_cycle
from examples.experiment import training

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(args, timeout=900):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''), TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', 'examples.experiment.run_cycle']
                        + args, cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _assert_png(path):
  assert os.path.exists(path), path
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_MAGIC


@pytest.fixture(scope='module')
def smoke_dir(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp('smoke'))
  result = _run(['--smoke', '--output_dir=' + run_dir])
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return run_dir


def test_smoke_cycle_writes_every_file(smoke_dir):
  path = lambda *p: os.path.join(smoke_dir, *p)
  with open(path('operative_config.gin')) as f:
    operative = f.read()
  assert "shrink_stage.regularizer = 'GammaFlopsRegularizer'" in operative
  assert 'load_data.train_examples = 384' in operative
  for stage in run_cycle.STAGES:
    assert os.path.exists(path('operative_config_%s.gin' % stage)), stage
  for name in ('original', 'shrunk', 'expanded', 'wm_0.50', 'wm_1.00'):
    with open(path('structures', name + '.json')) as f:
      structure = json.load(f)
    assert structure and all(isinstance(v, int) for v in structure.values())
  assert glob.glob(path('shrink', 'learned_structure', 'alive_*'))
  assert glob.glob(path('shrink', '**', 'events.out.tfevents.*'),
                   recursive=True)
  with open(path('shrink', 'metrics.json')) as f:
    shrink = json.load(f)
  assert shrink['regularizer'] == 'GammaFlops'
  with open(path('metrics.json')) as f:
    metrics = json.load(f)
  assert set(metrics['models']) == {'morphnet_expanded', 'morphnet_shrunk',
                                    'wm_0.50', 'wm_1.00'}
  for m in metrics['models'].values():
    assert m['flops'] > 0 and m['params'] > 0
    assert 0.0 <= m['test_accuracy'] <= 1.0
  with open(path('report.json')) as f:
    assert 'comparisons' in json.load(f)
  with open(path('report.md')) as f:
    assert '| model | FLOPs (M) |' in f.read()
  _assert_png(path('accuracy_vs_flops.png'))
  _assert_png(path('structure.png'))
  with open(path('timings.json')) as f:
    assert 'shrink' in json.load(f)


def test_a_stage_runs_alone(smoke_dir):
  os.remove(os.path.join(smoke_dir, 'report.md'))
  result = _run(['--smoke', '--stage=report', '--output_dir=' + smoke_dir])
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(os.path.join(smoke_dir, 'report.md'))
  assert os.path.exists(os.path.join(smoke_dir, 'operative_config_report.gin'))


def test_a_stage_without_its_inputs_says_which_to_run(tmp_path):
  result = _run(['--smoke', '--stage=expand', '--output_dir=%s' % tmp_path])
  assert result.returncode != 0
  assert 'run the stage that writes it first (--stage=shrink)' in (
      result.stderr)


def test_parse_stages():
  assert run_cycle.parse_stages('all') == list(run_cycle.STAGES)
  assert run_cycle.parse_stages('shrink, expand') == ['shrink', 'expand']
  with pytest.raises(Exception, match='Invalid value for flag --stage'):
    run_cycle.parse_stages('shrink,grow')


CURVE = [(1e6, 0.80, 'wm_0.50'), (4e6, 0.86, 'wm_1.00')]


def test_curve_interpolation():
  assert report.flops_at_accuracy(CURVE, 0.80) == pytest.approx(1e6)
  assert report.flops_at_accuracy(CURVE, 0.83) == pytest.approx(2e6)
  assert report.flops_at_accuracy(CURVE, 0.90) is None
  assert report.accuracy_at_flops(CURVE, 2e6) == pytest.approx(0.83)
  assert report.accuracy_at_flops(CURVE, 8e6) is None
  assert report.accuracy_at_flops(CURVE, 4.02e6) == pytest.approx(0.86)


def test_make_report_from_metrics(tmp_path):
  models_ = {
      'wm_0.50': {'kind': 'width_multiplier', 'flops': 1e6, 'params': 1e3,
                  'test_accuracy': 0.80},
      'wm_1.00': {'kind': 'width_multiplier', 'flops': 4e6, 'params': 4e3,
                  'test_accuracy': 0.86},
      'morphnet_shrunk': {'kind': 'morphnet', 'flops': 1.5e6, 'params': 2e3,
                          'test_accuracy': 0.83},
      'morphnet_expanded': {'kind': 'morphnet', 'flops': 4e6,
                            'params': 5e3, 'test_accuracy': 0.87},
  }
  with open(tmp_path / 'metrics.json', 'w') as f:
    json.dump({'models': models_, 'seed': 0}, f)
  result = report.make_report(str(tmp_path))
  shrunk = result['comparisons']['morphnet_shrunk']
  assert shrunk['flop_saving_at_equal_accuracy'] == pytest.approx(0.25)
  answers = result['answers']
  assert answers['shrunk_saves_11_percent_flops_at_equal_accuracy']
  assert answers['expanded_accuracy_at_least_original']
  assert answers['expanded_minus_original_accuracy_points'] == pytest.approx(
      1.0)
  _assert_png(str(tmp_path / 'accuracy_vs_flops.png'))
  assert '25.0%' in (tmp_path / 'report.md').read_text()


def test_make_report_without_metrics_says_which_stage(tmp_path):
  with pytest.raises(FileNotFoundError, match='--stage=evaluate'):
    report.make_report(str(tmp_path))


def test_regularizer_lookup():
  assert registry.get_regularizer_class(
      'LogisticSigmoidFlopsRegularizer').__name__ == (
          'LogisticSigmoidFlopsRegularizer')
  with pytest.raises(ValueError, match="Did you mean 'GammaFlopsRegularizer'"):
    registry.get_regularizer_class('GammaFlopRegularizer')
  assert registry.threshold_kwargs('GammaFlopsRegularizer', 0.1) == {
      'gamma_threshold': 0.1}
  assert registry.threshold_kwargs('GroupLassoFlopsRegularizer', 0.1) == {
      'threshold': 0.1}
  assert registry.threshold_kwargs('LogisticSigmoidFlopsRegularizer', 0.1) == {
      'alive_threshold': 0.1}
  with pytest.raises(ValueError, match='Invalid value for argument `resource`'):
    cycle.resource_of('energy')


def test_gated_model_has_the_plain_model_conv_names():
  plain = models.small_resnet(widths=(4, 8), stem_width=4)
  gated = models.small_resnet(widths=(4, 8), stem_width=4, gated=True)
  conv_names = lambda m: sorted(l.name for l in m.layers
                                if 'Conv' in type(l).__name__)
  assert conv_names(plain) == conv_names(gated)
  assert any('Gating' in type(l).__name__ for l in gated.layers)


def test_model_without_batch_norm_for_group_lasso():
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  kwargs = dict(input_shape=(8, 8, 1), widths=(4, 8), stem_width=4)
  plain = models.small_resnet(batch_norm=False, **kwargs)
  with_bn = models.small_resnet(**kwargs)
  assert not any('BatchNormalization' in type(l).__name__
                 for l in plain.layers)
  assert all(l.use_bias for l in plain.layers if 'Conv' in type(l).__name__)
  costs = [morph_keras.ModelRegularizer(
      m, flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=1e-3).initial_cost for m in (plain, with_bn)]
  assert costs[0] == costs[1] > 0


def test_model_and_optimizer_errors():
  with pytest.raises(ValueError, match='Invalid value for argument `family`'):
    models.build_model(family='vit')
  with pytest.raises(ValueError,
                     match='Invalid value for argument `application`'):
    models.keras_application(application='NoSuchNet')
  with pytest.raises(ValueError, match='Invalid value for argument `schedule`'):
    training.make_optimizer(10, schedule='linear')
  with pytest.raises(ValueError, match='Invalid value for argument `optimizer`'):
    training.make_optimizer(10, optimizer='lamb')


@pytest.mark.parametrize('config', sorted(
    os.path.basename(p) for p in glob.glob(
        os.path.join(run_cycle.CONFIG_DIR, '*.gin'))))
def test_shipped_configs_parse(config):
  import gin  # pylint: disable=g-import-not-at-top
  # The latency use case's own configurables (run_seed, calibration, ...).
  from examples.experiment import latency_target  # pylint: disable=g-import-not-at-top,unused-import
  gin.clear_config()
  try:
    gin.add_config_file_search_path(run_cycle.CONFIG_DIR)
    gin.parse_config_file(os.path.join(run_cycle.CONFIG_DIR, config))
    name = gin.query_parameter('shrink_stage.regularizer')
    assert registry.get_regularizer_class(name).__name__ == name
    if name.startswith('LogisticSigmoid'):
      assert gin.query_parameter('shrink_stage.gated')
  finally:
    gin.clear_config()
