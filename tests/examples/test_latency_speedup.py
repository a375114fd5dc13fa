"""benchmarks/latency_speedup.py: the tables on known numbers, a smoke run."""

import json
import os
import subprocess
import sys

import pytest

from examples import datasets

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_BENCHMARK = os.path.join(_ROOT, 'benchmarks', 'latency_speedup.py')

# Accuracies of three seeds: paired differences in points latency - flops
# [1, 1, 3], latency - uniform [2, 2, 2], flops - uniform [1, 1, -1].
_ACCURACIES = {'latency': (0.80, 0.82, 0.84), 'flops': (0.79, 0.81, 0.81),
               'uniform': (0.78, 0.80, 0.82)}


def _records():
  return [{'network': 'net', 'method': method, 'seed': seed,
           'accuracy': accuracy}
          for method, values in sorted(_ACCURACIES.items())
          for seed, accuracy in enumerate(values)]


def test_accuracy_summary_on_known_numbers():
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  methods, differences = latency_speedup.accuracy_summary(_records())
  assert [(r['network'], r['method'], r['seeds']) for r in methods] == [
      ('net', 'latency', [0, 1, 2]), ('net', 'flops', [0, 1, 2]),
      ('net', 'uniform', [0, 1, 2])]
  assert methods[0]['value']['mean'] == pytest.approx(82.0)
  assert methods[0]['value']['std'] == pytest.approx(2.0)
  # t(0.975, 2) = 4.302653: half width 4.302653 x 2 / sqrt(3).
  assert methods[0]['value']['half_width'] == pytest.approx(4.968275, 1e-6)
  assert [(d['method'], d['baseline'], d['seeds']) for d in differences] == [
      ('latency', 'flops', [0, 1, 2]), ('latency', 'uniform', [0, 1, 2]),
      ('flops', 'uniform', [0, 1, 2])]
  by_pair = {(d['method'], d['baseline']): d['difference']
             for d in differences}
  assert by_pair[('latency', 'flops')]['mean'] == pytest.approx(5.0 / 3)
  assert by_pair[('latency', 'flops')]['std'] == pytest.approx(
      (4.0 / 3) ** 0.5)
  assert by_pair[('latency', 'uniform')]['mean'] == pytest.approx(2.0)
  assert by_pair[('latency', 'uniform')]['std'] == pytest.approx(0.0,
                                                                 abs=1e-9)
  assert by_pair[('flops', 'uniform')]['ci_low'] == pytest.approx(
      1.0 / 3 - 4.302653 * (4.0 / 3) ** 0.5 / 3 ** 0.5, 1e-6)


def test_summary_table_on_known_numbers():
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  assert latency_speedup.summary_table(_records()) == [
      '| network | method | seeds | accuracy mean (%) | std | 95% interval |',
      '|---|---|---|---|---|---|',
      '| net | latency | 3 | 82.00 | 2.00 | [77.03, 86.97] |',
      '| net | flops | 3 | 80.33 | 1.15 | [77.46, 83.20] |',
      '| net | uniform | 3 | 80.00 | 2.00 | [75.03, 84.97] |',
      '',
      '| network | paired difference (points) | seeds | mean | std | 95% '
      'interval |',
      '|---|---|---|---|---|---|',
      '| net | latency - flops | 3 | +1.67 | 1.15 | [-1.20, 4.54] |',
      '| net | latency - uniform | 3 | +2.00 | 0.00 | [2.00, 2.00] |',
      '| net | flops - uniform | 3 | +0.33 | 1.15 | [-2.54, 3.20] |']


def test_network_table_checks_target_equal_latency_and_surprises():
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  info = {'network': 'net', 'original_predicted_ns': 10e6,
          'original_flops': 100e6, 'target': 0.6, 'target_ns': 6e6,
          'flop_target': 50e6, 'batch_size': 64, 'preferred_multiple': 8}
  records = [
      {'method': 'latency', 'seed': 0, 'flops': 60e6, 'predicted_ns': 6e6,
       'shrink': {'epochs': 3, 'reached': True}, 'accuracy': 0.82},
      {'method': 'flops', 'seed': 0, 'flops': 50e6, 'predicted_ns': 6e6,
       'shrink': {'epochs': 20, 'reached': False}, 'accuracy': 0.81},
      # Fewer FLOPs, measured slower than the original, predicted faster.
      {'method': 'uniform', 'seed': 0, 'flops': 55e6, 'predicted_ns': 6.1e6},
  ]
  measured = {'measured_ms': {'original': 10.0, 'latency/0': 6.3,
                              'flops/0': 6.6, 'uniform/0': 10.5},
              'spread': {'latency/0': 0.02}, 'cpu': 'Test CPU',
              'flagged': ['uniform/0']}
  lines = latency_speedup.network_table(info, records, measured)
  assert lines[2] == (
      'Original: predicted 10.000 ms, measured 10.000 ms (batch 64; Test '
      'CPU; preferred multiple 8). Latency target 0.60 x predicted = 6.000 '
      'ms; FLOP target 50 MFLOPs of 100.')
  assert lines[6] == ('| latency | 0 | 3 | yes | 60.000 | 6.000 | 6.300 | '
                      '2.0% | 1.050 | 1.000 | 1.59x | 82.00 |')
  assert lines[7] == ('| flops | 0 | 20 | no | 50.000 | 6.000 | 6.600 | - | '
                      '- | 1.048 | 1.52x | 81.00 |')
  assert lines[8] == ('| uniform | 0 | - | - | 55.000 | 6.100 | 10.500 | - '
                      '| - | 1.667 | 0.95x | - |')
  assert lines[10:] == [
      'Latency-targeted structures measured at 1.050-1.050 of the target; 1 '
      'of 1 within 10%.',
      "Equal latency: flops structures measured at 1.048-1.048 of the "
      "latency structure's of the same seed.",
      "Equal latency: uniform structures measured at 1.667-1.667 of the "
      "latency structure's of the same seed.",
      'Rebuilt with fewer FLOPs but measured slower than the original and '
      "not predicted: 1 (uniform/0 +5.0%) (median above the original's)",
      'Slower by a test: not available (the measurement has no per-round '
      'times).',
      'Flagged unstable: uniform/0']


def test_slower_cases_count_strict_medians_and_a_significance_test():
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  # Five rounds each, all above the reference: the exact one-sided p of
  # U = 25 is 1 / C(10, 5).
  anchor = [10.0, 10.1, 10.2, 10.3, 10.4]
  above = [10.5, 10.6, 10.7, 10.8, 10.9]
  assert latency_prediction.slower_p_value(above, anchor) == pytest.approx(
      1.0 / 252, rel=1e-9)
  assert latency_prediction.slower_p_value(anchor, above) == 1.0
  info = {'network': 'net', 'original_predicted_ns': 10e6,
          'original_flops': 100e6, 'target': 0.6, 'target_ns': 6e6,
          'flop_target': 50e6, 'batch_size': 64, 'preferred_multiple': 8}
  records = [
      {'method': 'latency', 'seed': 0, 'flops': 60e6, 'predicted_ns': 6e6},
      # Median 0.5% above the original's, overlapping: U = 14, p ~ 0.42.
      {'method': 'uniform', 'seed': 0, 'flops': 55e6, 'predicted_ns': 6e6},
      # Every round above the original's: p = 1 / 252.
      {'method': 'flops', 'seed': 0, 'flops': 50e6, 'predicted_ns': 6e6},
      # Slower, but with more FLOPs than the original: not counted.
      {'method': 'flops', 'seed': 1, 'flops': 120e6, 'predicted_ns': 6e6},
  ]
  times = {'original': anchor, 'latency/0': [6.0, 6.1, 6.2, 6.3, 6.4],
           'uniform/0': [9.9, 10.15, 10.25, 10.35, 10.5],
           'flops/0': above, 'flops/1': above}
  measured = {'measured_ms': {'original': 10.2, 'latency/0': 6.2,
                              'uniform/0': 10.25, 'flops/0': 10.7,
                              'flops/1': 10.7},
              'spread': {}, 'times_ms': times,
              'anchor_times_ms': {name: anchor for name in times}}
  strict, significant = latency_speedup.slower_cases(
      records, measured, 100e6, 10e6)
  assert strict == ['uniform/0', 'flops/0']
  assert [name for name, _ in significant] == ['flops/0']
  assert significant[0][1] == pytest.approx(1.0 / 252, rel=1e-9)
  lines = latency_speedup.network_table(info, records, measured)
  assert lines[-2:] == [
      'Rebuilt with fewer FLOPs but measured slower than the original and '
      'not predicted: 2 (uniform/0 +0.5%, flops/0 +4.9%) (median above the '
      "original's)",
      'Of those with fewer FLOPs and not predicted slower, slower by a '
      'one-sided Mann-Whitney U test of the '
      "per-round times against the original's in the same group (p < "
      '0.05): 1 (flops/0 p=0.00397)']
  # Without per-round times, only the strict count.
  del measured['times_ms']
  assert latency_speedup.slower_cases(records, measured, 100e6, 10e6) == (
      ['uniform/0', 'flops/0'], None)


def test_main_job_network_is_fashion_mnist_only():
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.InvalidArgumentError) as raised:
    networks.build_model(networks.MAIN_JOB, input_shape=(32, 32, 3))
  assert str(raised.value) == (
      "Invalid arguments for architecture 'main_job_cnn' (the main job's CNN "
      'is built for Fashion-MNIST only). Expected input_shape=(28, 28, 1) or '
      'None and num_classes=10. Received: input_shape=(32, 32, 3), '
      'num_classes=10')
  with pytest.raises(ValueError) as raised:
    networks.build_model('lenet')
  assert str(raised.value) == (
      "Unknown architecture 'lenet'; expected one of mobilenet_v2, vgg, "
      'resnet, main_job_cnn.')


def test_main_job_network_is_the_main_jobs_cnn():
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  model = networks.build_model(networks.MAIN_JOB)
  assert model.name == 'fashion_cnn'
  assert [(layer.name, layer.filters) for layer in model.layers
          if hasattr(layer, 'filters')] == [
              ('conv1', 32), ('conv2', 64), ('conv3', 128)]


def test_smoke_flag_sets_the_tiny_budget_and_unknown_networks_fail(capsys):
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  args = latency_speedup.parse_args(['--smoke', '--networks=main_job_cnn'])
  assert (args.seeds, args.train_examples, args.max_epochs,
          args.retrain_epochs, args.repeats) == ('0,1', 256, 1, 1, 3)
  with pytest.raises(SystemExit):
    latency_speedup.parse_args(['--networks=main_job_cnn,lenet'])
  assert ('unknown networks lenet; expected some of main_job_cnn, '
          'mobilenet_v2, vgg, resnet') in capsys.readouterr().err
  # The default run is the two networks; the results table's are allowed.
  assert latency_speedup.parse_args([]).networks == 'main_job_cnn,mobilenet_v2'
  assert latency_speedup.parse_args(
      ['--networks=vgg,resnet']).networks == 'vgg,resnet'


def test_an_output_dir_of_other_settings_is_refused(tmp_path):
  from benchmarks import latency_speedup  # pylint: disable=g-import-not-at-top
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  flags = ['--output_dir=%s' % tmp_path, '--networks=main_job_cnn']
  latency_speedup.check_settings(latency_speedup.parse_args(flags))
  with open(tmp_path / 'settings.json') as f:
    assert json.load(f)['target'] == 0.6
  latency_speedup.check_settings(latency_speedup.parse_args(flags))  # Same.
  with pytest.raises(errors.InvalidArgumentError) as raised:
    latency_speedup.check_settings(latency_speedup.parse_args(
        flags + ['--target=0.5', '--batch_size=8']))
  assert str(raised.value) == (
      'Invalid value for argument `output_dir`: %s holds cells of other '
      'settings (--target=0.6 there, 0.5 now, --batch_size=64 there, 8 '
      'now). Use another --output_dir, or delete it to start again.' %
      (tmp_path / 'settings.json'))


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_smoke_runs_every_stage_then_reuses_the_cells(tmp_path):
  command = [sys.executable, _BENCHMARK, '--output_dir=%s' % tmp_path,
             '--networks=main_job_cnn', '--smoke']
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  # The timed stages apart from training: stop after the structures.
  part = subprocess.run(command + ['--stop_after=structures'],
                        capture_output=True, text=True, env=env,
                        timeout=1200, check=False)
  assert part.returncode == 0, part.stderr[-3000:]
  assert 'main_job_cnn: calibrate in a child process' in part.stdout
  assert 'measure in a child process' not in part.stdout
  assert 'Stopped after structures' in part.stdout
  base = tmp_path / 'main_job_cnn'
  with open(base / 'cells' / 'latency_0.json') as f:
    cell = json.load(f)
  assert 'structure' in cell and 'accuracy' not in cell
  assert not (base / 'measurement.json').exists()
  assert not (tmp_path / 'table.md').exists()
  first = subprocess.run(command, capture_output=True, text=True, env=env,
                         timeout=1200, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'calibrate in a child process' not in first.stdout
  assert 'structure in' not in first.stdout
  assert 'main_job_cnn: measure in a child process' in first.stdout
  with open(base / 'profile.json') as f:
    assert json.load(f)['format'] == 'morph_net.latency_profile'
  for method in ('latency', 'flops', 'uniform'):
    for seed in (0, 1):
      with open(base / 'cells' / ('%s_%d.json' % (method, seed))) as f:
        cell = json.load(f)
      assert (cell['network'], cell['method'], cell['seed']) == (
          'main_job_cnn', method, seed)
      assert sorted(cell['structure']) == ['conv1', 'conv2', 'conv3']
      assert 0.0 <= cell['accuracy'] <= 1.0
      if method != 'latency':
        assert cell['matched_to_ns'] > 0
  with open(base / 'measurement.json') as f:
    measured = json.load(f)
  assert measured['labels'] == ['original', 'latency/0', 'flops/0',
                                'uniform/0', 'latency/1', 'flops/1',
                                'uniform/1']
  table = (tmp_path / 'table.md').read_text().splitlines()
  assert table[0] == ('## Latency-targeted shrink: measured speed and '
                      'accuracy')
  assert '### main_job_cnn' in table
  assert any(line.startswith('Rebuilt with fewer FLOPs but measured slower '
                             'than the original and not predicted: ')
             for line in table)
  assert any(line.startswith('| main_job_cnn | latency - flops | 2 | ')
             for line in table)
  # A second invocation reuses every cell, the profile and the
  # measurement: nothing is trained or timed, the same table.
  second = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=1200, check=False)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'child process' not in second.stdout
  assert 'structure in' not in second.stdout
  assert 'accuracy 0.' not in second.stdout
  assert second.stdout.splitlines()[-len(table) - 1:-1] == table
