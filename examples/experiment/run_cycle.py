r"""Runs the MorphNet shrink -> expand -> retrain cycle and its baseline.

  python3 -m examples.experiment.run_cycle \
      --gin_file=examples/configs/gamma_flops.gin --output_dir=/tmp/cycle
  python3 -m examples.experiment.run_cycle --smoke --output_dir=/tmp/smoke
  python3 -m examples.experiment.run_cycle --stage=report --output_dir=...

Stages (--stage, comma separated, or 'all' in this order): shrink (train
with the regularizer, export the structure), expand (one width multiplier up
to the original cost), retrain (the expanded and the shrunk structures from
scratch), baseline (uniform width multipliers, same training budget),
evaluate (FLOPs, parameters, test accuracy -> metrics.json), report
(report.json, report.md, accuracy_vs_flops.png).

Each stage writes operative_config_<stage>.gin, and the run writes
operative_config.gin, in --output_dir.
"""

import os
import sys
import time

if __package__ in (None, ''):  # Run as a script: make `examples` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import gin

from morph_net.structure import atomic_file

from examples.experiment import cycle
from examples.experiment import report

STAGES = ('shrink', 'expand', 'retrain', 'baseline', 'evaluate', 'report')

# Bindings of --smoke: every stage in a couple of minutes.
SMOKE_BINDINGS = (
    'load_data.train_examples = 384',
    'load_data.test_examples = 256',
    'small_resnet.widths = (8, 16)',
    'small_resnet.stem_width = 8',
    'train.epochs = 1',
    'shrink/train.epochs = 1',
    'retrain/train.epochs = 1',
    'train.batch_size = 64',
    'shrink/train.batch_size = 64',
    'retrain/train.batch_size = 64',
    'train.export_every_n_steps = 3',
    'shrink/train.export_every_n_steps = 3',
    'baseline_stage.multipliers = (0.5, 1.0)',
)

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  flags.DEFINE_multi_string('gin_file', [],
                            'Gin config files (default: '
                            'examples/configs/gamma_flops.gin).')
  flags.DEFINE_multi_string('gin_bindings', [],
                            "Gin bindings, e.g. 'train.epochs = 2'.")
  flags.DEFINE_string('output_dir', '/tmp/morph_net_cycle', 'The run directory.')
  flags.DEFINE_string('stage', 'all',
                      'Comma separated stages among %s, or all.' % (STAGES,))
  flags.DEFINE_boolean('smoke', False,
                       'Tiny data, model and epochs: every stage in minutes.')

# The shipped configs; `include 'gamma_flops.gin'` finds them from anywhere.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs')
DEFAULT_GIN = os.path.join(CONFIG_DIR, 'gamma_flops.gin')


def parse_stages(value: str):
  stages = list(STAGES) if value == 'all' else [
      s.strip() for s in value.split(',') if s.strip()]
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise app.UsageError('Invalid value for flag --stage. Expected all or '
                         'stages among %s. Received: --stage=%s' %
                         (', '.join(STAGES), value))
  return stages


def write_operative_config(run_dir: str, stage: str) -> None:
  """Writes operative_config_<stage>.gin and the run's operative_config.gin.

  operative_config.gin joins the per-stage files of every stage run so far
  in this directory (stages may run in separate processes).
  """
  atomic_file.write_text_atomically(
      gin.operative_config_str(),
      os.path.join(run_dir, 'operative_config_%s.gin' % stage))
  parts = []
  for name in STAGES:
    path = os.path.join(run_dir, 'operative_config_%s.gin' % name)
    if os.path.exists(path):
      with open(path) as f:
        parts.append('# ---- stage %s ----\n%s' % (name, f.read()))
  atomic_file.write_text_atomically(
      '\n'.join(parts), os.path.join(run_dir, 'operative_config.gin'))


def run(run_dir: str, stages) -> None:
  """Runs `stages` (names of STAGES) in order in `run_dir`."""
  exp = cycle.Experiment(run_dir)
  functions = {
      'shrink': cycle.shrink_stage,
      'expand': cycle.expand_stage,
      'retrain': cycle.retrain_stage,
      'baseline': cycle.baseline_stage,
      'evaluate': cycle.evaluate_stage,
      'report': lambda e: report.make_report(e.run_dir),
  }
  start = time.time()
  for stage in stages:
    cycle.timed(exp, stage, functions[stage])
    write_operative_config(run_dir, stage)
  if len(stages) > 1:
    cycle.record_time(exp, '+'.join(stages), time.time() - start)
  print('run %s: stages %s done in %.0fs' % (run_dir, ','.join(stages),
                                            time.time() - start))
  if 'report' in stages:
    with open(os.path.join(run_dir, 'report.md')) as f:
      print(f.read())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % argv[1:])
  stages = parse_stages(FLAGS.stage)
  bindings = list(FLAGS.gin_bindings)
  if FLAGS.smoke:
    bindings = list(SMOKE_BINDINGS) + bindings
  gin.add_config_file_search_path(CONFIG_DIR)
  gin.parse_config_files_and_bindings(FLAGS.gin_file or [DEFAULT_GIN],
                                      bindings)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  atomic_file.write_text_atomically(
      gin.config_str(), os.path.join(FLAGS.output_dir, 'config.gin'))
  run(FLAGS.output_dir, stages)


if __name__ == '__main__':
  define_flags()
  app.run(main)
