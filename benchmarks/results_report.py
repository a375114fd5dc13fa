"""The results table's outputs: Markdown, JSON, plot data and plot.

`write(records, directory, tolerance)` writes `table.md`, `summary.md`,
`table.json`, `plot.csv` and (with matplotlib) `plot.png` from the cell
records of `results_table.py`; the statistics are
`examples.experiment.stats`.
"""

import collections
import os
from typing import Dict, List, Sequence

from examples.experiment import stats

__all__ = ['rows', 'markdown', 'summary_markdown', 'runtime_markdown',
           'plot_rows', 'write']

_KEYS = ('network', 'stage', 'target')
_MORPHNET = ('gamma', 'figs')
_STAGE_ORDER = {'original': 0, 'prune': 1, 'scratch': 2, 'rebuilt': 3,
                'finetune': 4, 'expand1': 5, 'reprune': 6, 'expand2': 7}


def _group(record: Dict) -> tuple:
  """(network, stage, target, method): one table row's records."""
  return tuple(record[k] for k in _KEYS) + (record['method'],)


def _rebuilt(records: Sequence[Dict]) -> List[Dict]:
  """Stage 'rebuilt': each finetune cell's accuracy before fine-tuning
  (the rebuilt network with the method's weights, as it comes out of
  `rebuild`), a row of its own."""
  return [dict(r, stage='rebuilt', accuracy=r['accuracy_before_finetune'],
               seconds=0.0)
          for r in records if r['stage'] == 'finetune' and
          r.get('accuracy_before_finetune') is not None]


def rows(records: Sequence[Dict]) -> List[Dict]:
  """Accuracy (points) per cell group, paired differences to uniform.

  Records without an accuracy (prune, reprune) give none. A finetune cell
  gives two rows: `rebuilt` (its accuracy before fine-tuning) and
  `finetune`. Each row also has 'flops' (mean), 'flops_distance' (largest
  |FLOPs / target - 1|) and, for MorphNet's methods, 'difference_l1' (the
  paired difference to Network Slimming, `l1`; else None).
  """
  records = list(records) + _rebuilt(records)
  result = stats.aggregate(records, _KEYS, 'accuracy', scale=100.0)
  # MorphNet against the ablation, unweighted L1 (Network Slimming).
  to_l1 = {_group(r): r['difference']
           for r in stats.aggregate(records, _KEYS, 'accuracy',
                                    baseline='l1', scale=100.0)}
  for row in result:
    row['difference_l1'] = (
        to_l1.get(_group(row))
        if row['method'] in _MORPHNET else None)
  flops = collections.defaultdict(list)
  for r in records:
    flops[_group(r)].append(r)
  for row in result:
    group = flops[_group(row)]
    row['flops'] = sum(r['flops'] for r in group) / len(group)
    row['flops_distance'] = max(abs(r['flops_distance']) for r in group)
  result.sort(key=lambda r: (r['network'], _STAGE_ORDER[r['stage']],
                             -r['target'], r['method']))
  return result


def _interval(summary, signed=False):
  if summary is None or summary['mean'] is None:
    return '-'
  spec = '%+.2f' if signed else '%.2f'
  text = spec % summary['mean']
  if summary['std'] is None:
    return text + ' (1 seed)'
  return '%s +- %.2f [%s, %s]' % (text, summary['std'],
                                  spec % summary['ci_low'],
                                  spec % summary['ci_high'])


def markdown(table_rows: Sequence[Dict]) -> str:
  """One line per (network, stage, target, method)."""
  lines = ['| network | stage | target | method | seeds | MFLOPs | max '
           '\\|FLOPs / target - 1\\| | accuracy (%): mean +- std [95% CI] | '
           'minus uniform, paired by seed (points): mean +- std [95% CI] | '
           'minus l1, paired by seed (points) |',
           '|---|---|---:|---|---:|---:|---:|---|---|---|']
  for r in table_rows:
    lines.append('| %s | %s | %.2f | %s | %d | %.3f | %.2f%% | %s | %s | %s |'
                 % (r['network'], r['stage'], r['target'], r['method'],
                    r['value']['n'], r['flops'] / 1e6,
                    100 * r['flops_distance'], _interval(r['value']),
                    _interval(r['difference'], signed=True),
                    _interval(r.get('difference_l1'), signed=True)))
  return '\n'.join(lines)


def _brief(row) -> str:
  """'88.33 (+2.82 [+1.48, +4.16])': mean, paired difference to uniform."""
  text = '%.2f' % row['value']['mean']
  difference = row['difference']
  if difference is None or difference['mean'] is None:
    return text
  if difference['ci_low'] is None:
    return text + ' (%+.2f, 1 seed)' % difference['mean']
  return text + ' (%+.2f [%+.2f, %+.2f])' % (
      difference['mean'], difference['ci_low'], difference['ci_high'])


def summary_markdown(table_rows: Sequence[Dict]) -> str:
  """One table per network: a line per (stage, target), a column per method.

  Each cell is the mean accuracy (%) and, in brackets, the difference to
  uniform paired by seed with its 95% t interval (points); `seeds` is the
  fewest seeds of the line's methods. The original network (no method to
  compare) is left out: it is uniform's `expand` lines.
  """
  methods = [m for m in ('gamma', 'figs', 'l1', 'uniform')
             if any(r['method'] == m for r in table_rows)]
  methods += sorted({r['method'] for r in table_rows} - set(methods))
  sections = []
  for network in sorted({r['network'] for r in table_rows}):
    lines_of = collections.OrderedDict()
    for r in table_rows:  # rows() order: stage, then target descending.
      if r['network'] == network and r['stage'] != 'original':
        lines_of.setdefault((r['stage'], r['target']), {})[r['method']] = r
    lines = ['**%s**' % network, '',
             '| stage | target | seeds | %s |' % ' | '.join(methods),
             '|---|---:|---:|%s' % ('---|' * len(methods))]
    for (stage, target), by_method in lines_of.items():
      lines.append('| %s | %.2f | %d | %s |' % (
          stage, target, min(r['value']['n'] for r in by_method.values()),
          ' | '.join(_brief(by_method[m]) if m in by_method else '-'
                     for m in methods)))
    sections.append('\n'.join(lines))
  return '\n\n'.join(sections)


def runtime_markdown(records: Sequence[Dict]) -> str:
  """What each kind of cell cost: count, mean and total seconds."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r['network'], r['method'], r['stage'])].append(r['seconds'])
  lines = ['| network | method | stage | cells | mean s per cell | total s |',
           '|---|---|---|---:|---:|---:|']
  for (network, method, stage), seconds in sorted(
      groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                      _STAGE_ORDER[kv[0][2]])):
    lines.append('| %s | %s | %s | %d | %.1f | %.0f |' % (
        network, method, stage, len(seconds), sum(seconds) / len(seconds),
        sum(seconds)))
  total = sum(r['seconds'] for r in records)
  lines.append('')
  lines.append('%d cells, %.0f s (%.2f h) in all.' % (len(records), total,
                                                     total / 3600.0))
  return '\n'.join(lines)


def plot_rows(table_rows: Sequence[Dict]) -> List[List]:
  """CSV rows: network, stage, method, target, n, mean, std, CI bounds."""
  out = [['network', 'stage', 'method', 'target', 'seeds', 'accuracy_mean',
          'accuracy_std', 'ci_low', 'ci_high']]
  for r in table_rows:
    v = r['value']
    out.append([r['network'], r['stage'], r['method'], r['target'], v['n'],
                v['mean'], v['std'], v['ci_low'], v['ci_high']])
  return out


def _plot(table_rows, path) -> bool:
  """Accuracy vs target per (stage, network), 95% error bars; False without
  matplotlib."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  stages = sorted({r['stage'] for r in table_rows}, key=_STAGE_ORDER.get)
  nets = sorted({r['network'] for r in table_rows})
  figure, axes = pyplot.subplots(
      len(stages), len(nets), squeeze=False,
      figsize=(4 * len(nets), 3 * len(stages)))
  for i, stage in enumerate(stages):
    for j, network in enumerate(nets):
      ax = axes[i][j]
      mine = [r for r in table_rows
              if r['stage'] == stage and r['network'] == network]
      for method in sorted({r['method'] for r in mine}):
        points = sorted((r['target'], r['value']) for r in mine
                        if r['method'] == method)
        ax.errorbar([t for t, _ in points], [v['mean'] for _, v in points],
                    yerr=[v['half_width'] or 0.0 for _, v in points],
                    marker='o', capsize=3, label=method)
      ax.set_title('%s, %s%s' % (network, stage, ', at the original FLOPs'
                                  if stage.startswith('expand') else ''))
      ax.set_xlabel('shrink target (fraction of the original FLOPs)')
      ax.set_ylabel('test accuracy (%), 95% CI')
      if mine:
        ax.legend(fontsize='small')
      else:  # A partial table: this network has no cell of this stage yet.
        ax.text(0.5, 0.5, 'no cells yet', ha='center', va='center',
                transform=ax.transAxes)
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  atomic_file.save_figure(figure, path)
  pyplot.close(figure)
  return True


def write(records: Sequence[Dict], directory: str, tolerance: float) -> str:
  """Writes the outputs for `records` into `directory`; returns table.md.

  Raises:
    UnequalCostError: if any record's FLOPs miss its target.
  """
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from benchmarks import results_methods  # pylint: disable=g-import-not-at-top
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  largest = 0.0
  for r in records:
    target = r['original_flops'] * (
        1.0 if r['stage'] in ('original', 'expand1', 'expand2')
        else r['target'])
    key = '%s_%s_%g_%d_%s' % tuple(r[k] for k in (
        'network', 'method', 'target', 'seed', 'stage'))
    largest = max(largest, abs(results_methods.check_equal_cost(
        key, r['flops'], target, tolerance)))
  table_rows = rows(records)
  text = '\n\n'.join([
      markdown(table_rows),
      'Equal FLOPs: %d cells, every one within %g%% of its target (largest '
      'distance %.2f%%).' % (len(records), 100 * tolerance, 100 * largest),
      runtime_markdown(records)])
  atomic_file.write_text_atomically(text + '\n',
                                    os.path.join(directory, 'table.md'))
  atomic_file.write_text_atomically(
      'Accuracy (%%), mean over the seeds; in brackets the difference to '
      'uniform paired by seed, points, with its 95%% t interval.\n\n%s\n'
      % summary_markdown(table_rows), os.path.join(directory, 'summary.md'))
  atomic_file.write_json_atomically({'rows': table_rows},
                                    os.path.join(directory, 'table.json'))
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerows(plot_rows(table_rows))
  atomic_file.write_text_atomically(buffer.getvalue(),
                                    os.path.join(directory, 'plot.csv'))
  if table_rows and not _plot(table_rows, os.path.join(directory,
                                                       'plot.png')):
    text += '\n\nmatplotlib is not installed: plot.csv holds the plot data.'
  return text
