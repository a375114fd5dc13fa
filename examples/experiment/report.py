"""The report of a cycle: table (JSON, Markdown) and accuracy-vs-FLOPs plot.

The width-multiplier networks form a curve of (FLOPs, accuracy). Each
MorphNet network is compared with it at equal accuracy (the FLOPs the curve
needs for the same accuracy, interpolated linearly in log FLOPs) and at
equal FLOPs (the curve's accuracy at the same FLOPs).
"""

import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import gin
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ['make_report', 'flops_at_accuracy', 'accuracy_at_flops']


def _curve(models: Dict) -> List[Tuple[float, float, str]]:
  points = [(m['flops'], m['test_accuracy'], name)
            for name, m in models.items() if m.get('kind') ==
            'width_multiplier']
  return sorted(points)


def flops_at_accuracy(curve: Sequence[Tuple[float, float, str]],
                      accuracy: float) -> Optional[float]:
  """FLOPs the width-multiplier curve needs for `accuracy` (None: off curve).

  Walks the curve from the cheapest point and interpolates (log FLOPs) in the
  first segment whose accuracies bracket `accuracy`.
  """
  for (f0, a0, _), (f1, a1, _) in zip(curve, curve[1:]):
    if min(a0, a1) <= accuracy <= max(a0, a1):
      if a1 == a0:
        return f0
      t = (accuracy - a0) / (a1 - a0)
      return math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))
  return None  # Outside the curve's accuracy range.


def accuracy_at_flops(curve: Sequence[Tuple[float, float, str]],
                      flops: float, tolerance: float = 0.01
                      ) -> Optional[float]:
  """The curve's accuracy at `flops` (interpolated in log FLOPs), or None.

  FLOPs within `tolerance` (relative) outside the curve count as its end
  point (an expanded network lands within 1% of the original cost).
  """
  if curve and curve[0][0] * (1 - tolerance) <= flops < curve[0][0]:
    return curve[0][1]
  if curve and curve[-1][0] < flops <= curve[-1][0] * (1 + tolerance):
    return curve[-1][1]
  for (f0, a0, _), (f1, a1, _) in zip(curve, curve[1:]):
    if f0 <= flops <= f1:
      t = (math.log(flops) - math.log(f0)) / (math.log(f1) - math.log(f0))
      return a0 + t * (a1 - a0)
  return None


def _nearest_by_accuracy(curve, accuracy):
  return min(curve, key=lambda p: abs(p[1] - accuracy)) if curve else None


@gin.configurable
def make_report(run_dir: str, equal_accuracy_points: float = 0.3,
                target_flop_saving: float = 0.11) -> Dict:
  """Writes report.json, report.md and accuracy_vs_flops.png in `run_dir`.

  Args:
    run_dir: the run directory (needs metrics.json from --stage=evaluate).
    equal_accuracy_points: accuracies within this many percentage points
      count as equal.
    target_flop_saving: the FLOP saving the MorphNet paper reports for the
      shrunk network at equal accuracy (11%).

  Returns:
    The report dictionary.
  """
  path = os.path.join(run_dir, 'metrics.json')
  if not os.path.exists(path):
    raise FileNotFoundError('%s does not exist: run --stage=evaluate first.'
                            % path)
  with open(path) as f:
    metrics = json.load(f)
  models = metrics['models']
  curve = _curve(models)
  comparisons = {}
  for name, m in sorted(models.items()):
    if m.get('kind') != 'morphnet':
      continue
    acc, flops = m['test_accuracy'], m['flops']
    wm_flops = flops_at_accuracy(curve, acc)
    wm_acc = accuracy_at_flops(curve, flops)
    nearest = _nearest_by_accuracy(curve, acc)
    comparisons[name] = {
        'wm_flops_at_equal_accuracy': wm_flops,
        'flop_saving_at_equal_accuracy': (1.0 - flops / wm_flops
                                          if wm_flops else None),
        'wm_accuracy_at_equal_flops': wm_acc,
        'accuracy_gain_at_equal_flops_points': (100.0 * (acc - wm_acc)
                                                if wm_acc is not None
                                                else None),
        'nearest_wm_by_accuracy': nearest[2] if nearest else None,
        'flop_saving_vs_nearest_wm': (1.0 - flops / nearest[0]
                                      if nearest else None),
        'accuracy_difference_vs_nearest_wm_points': (
            100.0 * (acc - nearest[1]) if nearest else None),
    }
  answers = {}
  shrunk = comparisons.get('morphnet_shrunk')
  if shrunk:
    saving = shrunk['flop_saving_at_equal_accuracy']
    near_ok = (abs(shrunk['accuracy_difference_vs_nearest_wm_points']) <=
               equal_accuracy_points and
               shrunk['flop_saving_vs_nearest_wm'] >= target_flop_saving)
    answers['shrunk_saves_%d_percent_flops_at_equal_accuracy' % round(
        100 * target_flop_saving)] = bool(
            (saving is not None and saving >= target_flop_saving) or near_ok)
  original = models.get('wm_1.00')
  if 'morphnet_expanded' in models and original:
    answers['expanded_accuracy_at_least_original'] = bool(
        models['morphnet_expanded']['test_accuracy'] >=
        original['test_accuracy'])
    answers['expanded_minus_original_accuracy_points'] = 100.0 * (
        models['morphnet_expanded']['test_accuracy'] -
        original['test_accuracy'])
  report = {'models': models, 'comparisons': comparisons, 'answers': answers,
            'seed': metrics.get('seed'),
            'train_examples': metrics.get('train_examples'),
            'test_examples': metrics.get('test_examples')}
  atomic_file.write_json_atomically(report, os.path.join(run_dir,
                                                        'report.json'))
  atomic_file.write_text_atomically(markdown(report),
                                    os.path.join(run_dir, 'report.md'))
  plot(models, os.path.join(run_dir, 'accuracy_vs_flops.png'))
  return report


def _fmt(value, spec):
  return '-' if value is None else spec % value


def _scaled(value, factor):
  return None if value is None else value * factor


def markdown(report: Dict) -> str:
  """The report as Markdown tables."""
  lines = ['| model | FLOPs (M) | params (K) | test accuracy (%) | '
           'train time (s) |', '|---|---:|---:|---:|---:|']
  for name, m in sorted(report['models'].items(),
                        key=lambda kv: kv[1]['flops']):
    lines.append('| %s | %.2f | %.1f | %.2f | %s |' % (
        name, m['flops'] / 1e6, m['params'] / 1e3,
        100 * m['test_accuracy'], _fmt(m.get('train_seconds'), '%.0f')))
  lines += ['', '| MorphNet model | width-multiplier FLOPs at equal accuracy '
            '(M) | FLOP saving | width-multiplier accuracy at equal FLOPs (%) |'
            ' accuracy gain (points) |', '|---|---:|---:|---:|---:|']
  for name, c in sorted(report['comparisons'].items()):
    wm_flops = c['wm_flops_at_equal_accuracy']
    lines.append('| %s | %s | %s | %s | %s |' % (
        name, _fmt(_scaled(wm_flops, 1e-6), '%.2f'),
        _fmt(_scaled(c['flop_saving_at_equal_accuracy'], 100), '%.1f%%'),
        _fmt(_scaled(c['wm_accuracy_at_equal_flops'], 100), '%.2f'),
        _fmt(c['accuracy_gain_at_equal_flops_points'], '%+.2f')))
  lines += ['', 'Seed %s, %s training / %s test examples.' % (
      report.get('seed'), report.get('train_examples'),
      report.get('test_examples')), '']
  for key, value in sorted(report['answers'].items()):
    lines.append('- %s: %s' % (key, value))
  return '\n'.join(lines) + '\n'


def plot(models: Dict, path: str,
         ylabel: str = 'test accuracy (%)') -> str:
  """Accuracy vs FLOPs: the width-multiplier curve and the MorphNet points.

  Models with a `test_accuracy_std` (see aggregate.py) get error bars.
  """
  std = lambda m: 100 * m.get('test_accuracy_std', 0.0)
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  try:
    curve = _curve(models)
    if curve:
      ax.errorbar([p[0] / 1e6 for p in curve], [100 * p[1] for p in curve],
                  yerr=[std(models[p[2]]) for p in curve], fmt='o-',
                  color='#9aa7b8', capsize=3, label='width multiplier')
      for f, a, name in curve:
        ax.annotate(name.replace('wm_', 'x'), (f / 1e6, 100 * a),
                    textcoords='offset points', xytext=(4, -10), fontsize=8)
    for name, m in sorted(models.items()):
      if m.get('kind') == 'morphnet':
        ax.errorbar(m['flops'] / 1e6, 100 * m['test_accuracy'], yerr=std(m),
                    fmt='*', markersize=13, capsize=3, label=name)
    ax.set_xscale('log')
    ax.set_xlabel('FLOPs (M, log scale)')
    ax.set_ylabel(ylabel)
    ax.set_title('MorphNet vs uniform width multiplier')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    atomic_file.save_figure(fig, path)
  finally:
    plt.close(fig)
  return path
