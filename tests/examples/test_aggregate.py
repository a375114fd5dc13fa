"""aggregate: mean +- std of the cycle reports of several seeds."""

import json
import os

import pytest

from examples.experiment import aggregate
from examples.experiment import report

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(tmp_path, seed, accuracies):
  """A run directory with metrics.json and report.json (no training)."""
  run_dir = str(tmp_path / ('seed%d' % seed))
  os.makedirs(run_dir)
  flops = {'wm_0.50': 4e6, 'wm_1.00': 16e6, 'morphnet_shrunk': 6e6,
           'morphnet_expanded': 16e6}
  models = {name: {'kind': ('width_multiplier' if name.startswith('wm')
                            else 'morphnet'),
                   'flops': flops[name], 'params': 1000,
                   'test_accuracy': accuracies[name]}
            for name in flops}
  with open(os.path.join(run_dir, 'metrics.json'), 'w') as f:
    json.dump({'seed': seed, 'models': models, 'train_examples': 10,
               'test_examples': 10}, f)
  report.make_report(run_dir)
  return run_dir


def test_means_and_answers(tmp_path):
  # Curve 0.80 @ 4M -> 0.90 @ 16M: log-FLOPs interpolation, so accuracy
  # 0.85 sits at 8M (saving 25% for a 6M shrunk net) and 0.875 at ~11.3M.
  runs = [
      _run(tmp_path, 0, {'wm_0.50': 0.80, 'wm_1.00': 0.90,
                         'morphnet_shrunk': 0.85, 'morphnet_expanded': 0.91}),
      _run(tmp_path, 1, {'wm_0.50': 0.80, 'wm_1.00': 0.90,
                         'morphnet_shrunk': 0.875,
                         'morphnet_expanded': 0.895}),
  ]
  output = str(tmp_path / 'agg')
  result = aggregate.aggregate(runs, output)
  savings = [row['shrunk_flop_saving'] for row in result['seeds']]
  assert savings[0] == pytest.approx(0.25)
  assert savings[1] == pytest.approx(1 - 6 / (4 * 4 ** 0.75))
  assert result['summary']['shrunk_flop_saving']['mean'] == pytest.approx(
      sum(savings) / 2)
  assert [row['expanded_minus_original_points'] for row in result['seeds']
         ] == pytest.approx([1.0, -0.5])
  assert result['summary']['expanded_minus_original_points'][
      'mean'] == pytest.approx(0.25)
  assert result['summary']['expanded_minus_original_points'][
      'std'] == pytest.approx(1.5 / 2 ** 0.5)
  assert result['models']['morphnet_shrunk']['test_accuracy'] == (
      pytest.approx(0.8625))
  answers = result['answers']
  assert answers['mean_shrunk_flop_saving_at_least_11_percent'] is True
  assert answers['seeds_with_shrunk_flop_saving_at_least_11_percent'] == 2
  assert answers['mean_expanded_accuracy_at_least_original'] is True
  assert answers['seeds_with_expanded_accuracy_at_least_original'] == 1
  with open(output + '.md') as f:
    text = f.read()
  assert '| mean +- std | | | 36.0% +- 15.5% |' in text
  assert '| 0.25 +- 1.06 |\n' in text
  with open(output + '.png', 'rb') as f:
    assert f.read(8) == PNG_MAGIC
  with open(output + '.json') as f:
    assert json.load(f)['answers'] == answers


def test_missing_report_names_the_run(tmp_path):
  with pytest.raises(FileNotFoundError, match='--stage=evaluate,report'):
    aggregate.aggregate([str(tmp_path)], str(tmp_path / 'agg'))
