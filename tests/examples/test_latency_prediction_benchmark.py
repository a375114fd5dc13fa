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


def _measurement(times_by_label, anchor_times):
  """A `MeasurementReport.to_dict()` of one group, the original shared."""
  return {'measurements': [{'label': label, 'group': 0, 'times_ns': times}
                           for label, times in times_by_label],
          'shared': [[{'label': 'original (anchor)',
                       'times_ns': anchor_times}]]}


def test_surprises_are_tested_against_the_original_in_their_group(
    prediction, capsys):
  anchor = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1]
  result = {
      'model': 'M', 'size': 8, 'flops': [100, 50, 60],
      'measured_ms': [10.0, 10.05, 11.0], 'spread': [0.0] * 3,
      'iqr_ms': [0.1] * 3, 'flagged': [], 'anchor_ms': [10.0],
      'predicted_ms': {'(c) calibrated profile': [10.0, 9.0, 9.5]},
      'metrics': {'(c) calibrated profile': {
          'mape': 0.1, 'spearman': 1.0, 'original_error': 0.0}},
      # s0 overlaps the original round for round; s1 is slower in every
      # round (Mann-Whitney p = 1 / C(16, 8) = 7.8e-5 for 8 against 8).
      'measurement': _measurement(
          [('original', anchor),
           ('s0', [t + (0.3 if i % 2 else -0.3) for i, t in
                   enumerate(anchor)]),
           ('s1', [t + 10.0 for t in anchor])], anchor),
  }
  assert prediction.surprises(result['flops'], result['measured_ms'],
                              result['predicted_ms'][
                                  '(c) calibrated profile']) == [1, 2]
  significant = prediction.significant_surprises(result, [1, 2])
  assert [i for i, _ in significant] == [2]
  assert significant[0][1] == pytest.approx(1.0 / 12870, rel=1e-6)
  assert prediction.significant_surprises({}, [1]) is None
  prediction.print_table(result, 8)
  out = capsys.readouterr().out
  assert ('not predicted by the profile: 2\n') in out
  assert ("  of them slower by a one-sided Mann-Whitney U test of the "
          "per-round times against the original's in the same group "
          "(p < 0.05): 1 s1 (p = 7.77e-05)") in out


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
