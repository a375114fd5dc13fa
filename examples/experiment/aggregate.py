r"""Joins the reports of several cycle runs (seeds) into mean +- std tables.

  python3 -m examples.experiment.aggregate \
      --run=/tmp/cycle_seed0 --run=/tmp/cycle_seed1 --run=/tmp/cycle_seed2 \
      --output=/tmp/cycle_seeds

Each run directory needs report.json (--stage=report). Writes
<output>.json, <output>.md (one row per seed with the two headline
comparisons, their mean and standard deviation, and every model's mean
FLOPs and accuracy) and <output>.png (accuracy vs FLOPs with one standard
deviation error bars), and prints the Markdown.
"""

import json
import os
import statistics
from typing import Dict, List, Sequence

from absl import app
from absl import flags

from morph_net.structure import atomic_file

from examples.experiment import report as report_lib

__all__ = ['aggregate', 'load_reports']

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program)."""
  flags.DEFINE_multi_string('run', [], 'A run directory with report.json.')
  flags.DEFINE_string('output', '/tmp/cycle_seeds',
                      'Output path prefix (.json, .md and .png are added).')


def load_reports(run_dirs: Sequence[str]) -> List[Dict]:
  """The report.json of each run directory.

  Raises:
    FileNotFoundError: naming the run without a report.
  """
  reports = []
  for run_dir in run_dirs:
    path = os.path.join(run_dir, 'report.json')
    if not os.path.exists(path):
      raise FileNotFoundError('%s does not exist: run --stage=evaluate,report '
                              'in %s first.' % (path, run_dir))
    with open(path) as f:
      report = json.load(f)
    report['run_dir'] = run_dir
    reports.append(report)
  return reports


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return (statistics.mean(values),
          statistics.stdev(values) if len(values) > 1 else 0.0)


def _seed_row(report: Dict) -> Dict:
  models = report['models']
  shrunk = report['comparisons'].get('morphnet_shrunk', {})
  expanded = models.get('morphnet_expanded')
  original = models.get('wm_1.00')
  return {
      'seed': report.get('seed'),
      'run_dir': report['run_dir'],
      'shrunk_flops': models.get('morphnet_shrunk', {}).get('flops'),
      'shrunk_accuracy': models.get('morphnet_shrunk', {}).get(
          'test_accuracy'),
      'shrunk_flop_saving': shrunk.get('flop_saving_at_equal_accuracy'),
      'shrunk_accuracy_gain_points': shrunk.get(
          'accuracy_gain_at_equal_flops_points'),
      'expanded_accuracy': expanded and expanded['test_accuracy'],
      'original_accuracy': original and original['test_accuracy'],
      'expanded_minus_original_points': (
          100.0 * (expanded['test_accuracy'] - original['test_accuracy'])
          if expanded and original else None),
  }


def aggregate(run_dirs: Sequence[str], output: str,
              target_flop_saving: float = 0.11) -> Dict:
  """Writes <output>.json/.md/.png for the runs; returns the summary."""
  reports = load_reports(run_dirs)
  rows = [_seed_row(r) for r in reports]
  summary = {}
  for key in ('shrunk_flop_saving', 'shrunk_accuracy_gain_points',
              'expanded_minus_original_points'):
    mean, std = _mean_std([row[key] for row in rows])
    summary[key] = {'mean': mean, 'std': std}
  models = {}
  names = sorted(set().union(*(r['models'] for r in reports)))
  for name in names:
    present = [r['models'][name] for r in reports if name in r['models']]
    flops, _ = _mean_std([m['flops'] for m in present])
    acc, acc_std = _mean_std([m['test_accuracy'] for m in present])
    models[name] = {'kind': present[0].get('kind'), 'runs': len(present),
                    'flops': flops, 'test_accuracy': acc,
                    'test_accuracy_std': acc_std}
  saving = summary['shrunk_flop_saving']['mean']
  gain = summary['expanded_minus_original_points']['mean']
  answers = {
      'mean_shrunk_flop_saving_at_least_%d_percent' % round(
          100 * target_flop_saving): (saving is not None and
                                      saving >= target_flop_saving),
      'seeds_with_shrunk_flop_saving_at_least_%d_percent' % round(
          100 * target_flop_saving): sum(
              1 for row in rows if row['shrunk_flop_saving'] is not None and
              row['shrunk_flop_saving'] >= target_flop_saving),
      'mean_expanded_accuracy_at_least_original': (gain is not None and
                                                   gain >= 0.0),
      'seeds_with_expanded_accuracy_at_least_original': sum(
          1 for row in rows if row['expanded_minus_original_points'] is not
          None and row['expanded_minus_original_points'] >= 0.0),
      'seeds': len(rows),
  }
  result = {'seeds': rows, 'summary': summary, 'models': models,
            'answers': answers}
  atomic_file.write_json_atomically(result, output + '.json')
  atomic_file.write_text_atomically(markdown(result), output + '.md')
  report_lib.plot(models, output + '.png',
              ylabel='test accuracy (%), mean +- std over seeds')
  return result


def _fmt(value, spec, scale=1.0):
  return '-' if value is None else spec % (value * scale)


def markdown(result: Dict) -> str:
  """Per-seed rows, their mean +- std, then every model's mean."""
  lines = ['| seed | shrunk MFLOPs | shrunk acc. (%) | FLOP saving at equal '
           'accuracy | acc. gain at equal FLOPs (points) | expanded acc. (%) '
           '| original acc. (%) | expanded - original (points) |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  for row in result['seeds']:
    lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
        row['seed'], _fmt(row['shrunk_flops'], '%.2f', 1e-6),
        _fmt(row['shrunk_accuracy'], '%.2f', 100),
        _fmt(row['shrunk_flop_saving'], '%.1f%%', 100),
        _fmt(row['shrunk_accuracy_gain_points'], '%+.2f'),
        _fmt(row['expanded_accuracy'], '%.2f', 100),
        _fmt(row['original_accuracy'], '%.2f', 100),
        _fmt(row['expanded_minus_original_points'], '%+.2f')))
  s = result['summary']
  pm = lambda key, spec, scale=1.0: '%s +- %s' % (
      _fmt(s[key]['mean'], spec, scale), _fmt(s[key]['std'], spec, scale))
  lines.append('| mean +- std | | | %s | %s | | | %s |' % (
      pm('shrunk_flop_saving', '%.1f%%', 100),
      pm('shrunk_accuracy_gain_points', '%.2f'),
      pm('expanded_minus_original_points', '%.2f')))
  lines += ['', '| model | runs | mean MFLOPs | mean test accuracy (%) |',
            '|---|---:|---:|---:|']
  for name, m in sorted(result['models'].items(),
                        key=lambda kv: kv[1]['flops']):
    lines.append('| %s | %d | %.2f | %.2f +- %.2f |' % (
        name, m['runs'], m['flops'] / 1e6, 100 * m['test_accuracy'],
        100 * m['test_accuracy_std']))
  lines.append('')
  for key, value in sorted(result['answers'].items()):
    lines.append('- %s: %s' % (key, value))
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % argv[1:])
  if not FLAGS.run:
    raise app.UsageError('Give at least one --run=<run directory>.')
  aggregate(FLAGS.run, FLAGS.output)
  with open(FLAGS.output + '.md') as f:
    print(f.read())


if __name__ == '__main__':
  define_flags()
  app.run(main)
