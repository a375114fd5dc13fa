"""benchmarks/latency_prediction.py: surprises, the table, saved samples."""

import importlib.util
import os

import pytest

from morph_net.latency import fit

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def prediction():
  spec = importlib.util.spec_from_file_location(
      'latency_prediction',
      os.path.join(_ROOT, 'benchmarks', 'latency_prediction.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_surprises_are_smaller_structures_measured_slower_not_predicted(
    prediction):
  flops = [100, 50, 60, 120, 40, 30]
  measured = [10.0, 12.0, 9.0, 13.0, 11.0, 11.0]
  predicted = [10.0, 9.0, 8.0, 12.0, 10.5, 9.0]
  # 1: fewer FLOPs, slower, predicted faster -> a surprise. 2: faster.
  # 3: more FLOPs. 4: predicted slower (10.5 > 10). 5: a surprise.
  assert prediction.surprises(flops, measured, predicted) == [1, 5]


def test_table_prints_errors_spread_and_surprises(prediction, capsys):
  result = {
      'model': 'MobileNetV2', 'size': 96, 'flops': [100, 50, 60],
      'measured_ms': [10.0, 12.0, 6.0], 'spread': [0.02, 0.05, 0.3],
      'iqr_ms': [0.2, 0.6, 1.8], 'flagged': ['s1'],
      'anchor_ms': [10.0, 10.4],
      'predicted_ms': {'(c) calibrated profile': [10.5, 9.0, 6.5]},
      'metrics': {'(c) calibrated profile': {
          'mape': 0.2, 'spearman': 0.5, 'original_error': 0.05}},
  }
  prediction.print_table(result, 8)
  out = capsys.readouterr().out
  assert ('MobileNetV2 96x96, batch 8, 2 random structures: measured '
          '6.0-12.0 ms (original 10.0 ms)') in out
  assert ('(c) calibrated profile                  20.0%     0.500'
          '           5.0%') in out
  assert ('spread (IQR / median) of the 3 models: median 5.0%, max 30.0%; '
          'flagged unstable: s1') in out
  assert 'the original timed in each of the 2 groups: 10.00-10.40 ms' in out
  assert ('s0           50.0%        12.00     0.60           9.00') in out
  assert ('not predicted by the profile: 1\n  s0: 50.0% of the FLOPs, '
          'measured 12.00 ms (original 10.00), predicted 9.00 ms (original '
          '10.50)') in out


def test_saved_samples_keep_their_aligned_features(prediction):
  aligned = {1: [('conv', 10.0, 4.0)], 8: [('conv', 16.0, 8.0)]}
  sample = fit.Sample(aligned[1], 5.0, 'x', 2.0, aligned)
  data = prediction.samples_to_json([sample])
  assert data[0]['aligned'] == {'1': [['conv', 10.0, 4.0]],
                                '8': [['conv', 16.0, 8.0]]}
  assert prediction.samples_from_json(data) == [sample]
  old = dict(data[0])
  del old['aligned']  # Reports written before profiles were aligned.
  assert prediction.samples_from_json([old])[0].aligned is None
  assert prediction.structure_sample(
      {'1': [['conv', 10.0, 4.0]], '8': [['conv', 16.0, 8.0]]}).aligned == (
          aligned)
  assert prediction.structure_sample([['conv', 10.0, 4.0]]).ops == aligned[1]


def test_input_shape_of_an_image_size_or_a_shape(prediction):
  assert prediction.input_shape(96) == (96, 96, 3)
  assert prediction.input_shape([28, 28, 1]) == (28, 28, 1)


def test_measurement_arguments_give_the_measurement_settings(prediction):
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=15)
  prediction.add_measurement_arguments(parser)
  args = parser.parse_args(['--clock=cpu', '--budget=64', '--warmup=2'])
  assert (args.threads, args.inter_op_threads) == (1, 1)
  settings = prediction.measurement_settings(args)
  assert (settings.repeats, settings.warmup, settings.clock, settings.budget,
          settings.probe, settings.statistic, settings.max_attempts,
          settings.unstable_spread) == (15, 2, 'cpu', 64, True, 'median', 3,
                                        0.1)
