r"""Compares the structures learned by two (or more) shrink runs.

  python3 -m examples.experiment.compare_structures \
      --run=flops=/tmp/runs/gamma_flops --run=size=/tmp/runs/gamma_model_size \
      --output=/tmp/runs/flops_vs_size

Writes <output>.md (per-layer kept fraction, with each layer's output
resolution, FLOP and weight share) and <output>.png (kept fraction per layer,
in network order), and prints the table.
"""

import json
import os

from absl import app
from absl import flags
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  flags.DEFINE_multi_string('run', [], 'label=run_dir of a shrink run.')
  flags.DEFINE_string('output', '/tmp/structure_comparison',
                      'Output path prefix (.md and .png are added).')


def _load(run_dir, name):
  with open(os.path.join(run_dir, 'structures', name + '.json')) as f:
    return json.load(f)


def kept_fractions(run_dir):
  original = _load(run_dir, 'original')
  shrunk = _load(run_dir, 'shrunk')
  return original, {n: shrunk.get(n, w) / float(w)
                    for n, w in original.items()}


def compare(runs, output):
  """runs: [(label, run_dir)]; writes output.md and output.png."""
  fractions = {}
  original = None
  totals = {}
  for label, run_dir in runs:
    original, fractions[label] = kept_fractions(run_dir)
    with open(os.path.join(run_dir, 'shrink', 'metrics.json')) as f:
      m = json.load(f)
    totals[label] = (m['regularizer'], m['shrunk_flops'] / m['original_flops'],
                     m['final_cost'] / m['initial_cost'])
  order = list(original)  # Structure JSON keys are sorted; use network order.
  order.sort(key=_network_position)
  labels = [label for label, _ in runs]
  lines = ['| layer | width | ' + ' | '.join('kept (%s)' % l for l in labels)
           + ' |', '|---|---:|' + '---:|' * len(labels)]
  for name in order:
    lines.append('| %s | %d | %s |' % (name, original[name], ' | '.join(
        '%.2f' % fractions[l][name] for l in labels)))
  lines.append('')
  for label in labels:
    reg, flops, cost = totals[label]
    lines.append('- %s (%s): FLOPs kept %.1f%%, own cost kept %.1f%%' % (
        label, reg, 100 * flops, 100 * cost))
  text = '\n'.join(lines) + '\n'
  atomic_file.write_text_atomically(text, output + '.md')
  fig, ax = plt.subplots(figsize=(7, 4))
  try:
    for label in labels:
      ax.plot(range(len(order)), [fractions[label][n] for n in order], 'o-',
              label=label)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=60, fontsize=8)
    ax.set_ylabel('kept fraction of channels')
    ax.set_ylim(0, 1.05)
    ax.set_title('Learned structure per layer (input -> output)')
    ax.legend()
    atomic_file.save_figure(fig, output + '.png')
  finally:
    plt.close(fig)
  print(text)
  return text


def _network_position(name):
  """Order of small_resnet layer names: stem, then s<i>_proj, s<i>b<j>_*."""
  if name == 'stem':
    return (0, 0, '')
  if name.startswith('s') and name[1:2].isdigit():
    stage = int(name[1])
    return (stage, 0 if '_proj' in name else 1, name)
  return (99, 0, name)


def main(argv):
  del argv
  runs = []
  for item in FLAGS.run:
    label, _, run_dir = item.partition('=')
    if not run_dir:
      raise app.UsageError('Invalid value for flag --run. Expected '
                           'label=run_dir. Received: --run=%s' % item)
    runs.append((label, run_dir))
  compare(runs, FLAGS.output)


if __name__ == '__main__':
  define_flags()
  app.run(main)
