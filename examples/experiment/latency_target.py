r"""Shrink to a latency target: calibrated latency vs FLOPs at equal latency.

  python -m examples.experiment.latency_target \
      --gin_file=examples/configs/latency_target.gin \
      --output_dir=/tmp/latency_target --seeds=0,1,2

The question: when the target is the latency a user measures, does the
latency regularizer with a profile calibrated on this machine give a more
accurate network than the FLOP regularizer brought to the same measured
latency? Steps (threads pinned: 1 intra-op, 1 inter-op):

1. `profile.json`: calibrate the original network's layers on this machine
   at `batch_size` (once, shared by the seeds).
2. Per seed, `seed_<s>/latency`: shrink with GammaLatencyRegularizer on the
   profile; `seed_<s>/flops`: shrink with GammaFlopsRegularizer
   (`cycle.shrink_stage`, the config's shrink recipe for both).
3. Match: measure the latency-shrunk network (rebuilt, a tf.function at
   `batch_size`); scale the FLOP-shrunk structure by the one width
   multiplier whose measured latency equals it (bisection; each probe is
   timed interleaved with the reference, medians, so the machine's load
   cancels in the ratio).
4. Retrain both from scratch with the config's retrain recipe; test
   accuracy.
5. `report.json` and `report.md`: per seed and mean +- std.
"""

import json
import os
import sys

from absl import app
from absl import flags
import gin
import numpy as np

__all__ = ['define_flags', 'run_seed', 'main']

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program)."""
  flags.DEFINE_multi_string('gin_file', [], 'Gin config files.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
  flags.DEFINE_string('output_dir', None, 'Output directory.')
  flags.DEFINE_list('seeds', ['0'], 'Seeds, one complete run each.')
  flags.mark_flag_as_required('output_dir')


def _forward(model, batch_size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  return timing.model_call(model, tf.random.uniform(
      (batch_size,) + tuple(model.inputs[0].shape[1:])))


@gin.configurable
def match_latency(exp, reference, candidate, batch_size: int = 64,
                  repeats: int = 15, tolerance: float = 0.02,
                  clock: str = 'wall'):
  """Scales `candidate` until its measured latency equals `reference`'s.

  Args:
    exp: the `cycle.Experiment` (its original model).
    reference: the structure whose measured latency is the target.
    candidate: the structure to scale (its changeable groups, together).
    batch_size: inference batch size.
    repeats: interleaved rounds per probe (each times the second of two
      calls in a row of each model).
    tolerance: relative distance of the latencies that ends the search.
    clock: 'wall' or 'cpu' time (`latency.timing.CLOCKS`; cpu on a shared
      machine).

  Returns:
    (scaled structure, multiplier, measured candidate / reference ratio).
  """
  from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  from morph_net.structure import width_multiplier  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import channel_model  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
  original = exp.original_model()
  channels = channel_model.analyze(original)
  target = _forward(rebuild.rebuild(original, reference, channels=channels),
                    batch_size)

  def ratio(structure):
    probe = _forward(rebuild.rebuild(original, structure, channels=channels),
                     batch_size)
    # Each timed call follows a call of its own, as a deployed model's does
    # (`measurement.MeasurementSettings.consecutive`).
    times = np.median(timing.time_rounds(
        [target, probe], repeats, clock=clock,
        consecutive=measurement.MeasurementSettings().consecutive), axis=0)
    return float(times[1] / times[0])

  groups = expansion.expandable_groups(channels, candidate)
  return width_multiplier.expand_to_cost(ratio, dict(candidate), 1.0,
                                         groups=groups, tolerance=tolerance,
                                         max_iterations=12)


@gin.configurable
def run_seed(output_dir: str, seed: int, profile_path: str,
             batch_size: int = 64, latency_strength: float = 2.0,
             flops_strength: float = 2.0, threshold: float = 0.02):
  """Shrinks with both regularizers, matches latency, retrains; one seed.

  Args:
    output_dir: the experiment's output directory.
    seed: the seed (model initialisation and training).
    profile_path: the calibrated profile.
    batch_size: the deployment batch size (profile, measurements).
    latency_strength: strength multiplier (x 1 / initial latency).
    flops_strength: strength multiplier (x 1 / initial FLOPs).
    threshold: gamma threshold of both.

  Returns:
    {'latency': metrics, 'flops': metrics} of the two retrained networks.
  """
  from examples.experiment import cycle  # pylint: disable=g-import-not-at-top
  from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import resource_function  # pylint: disable=g-import-not-at-top
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  base = os.path.join(output_dir, 'seed_%d' % seed)
  runs = {}
  for name, regularizer, kwargs, strength in (
      ('latency', 'GammaLatencyRegularizer',
       {'hardware': profile_path, 'batch_size': batch_size},
       latency_strength),
      ('flops', 'GammaFlopsRegularizer', {}, flops_strength)):
    exp = cycle.Experiment(os.path.join(base, name), seed=seed)
    shrink = cycle.shrink_stage(exp, regularizer=regularizer,
                                threshold=threshold,
                                regularizer_kwargs=kwargs,
                                strength_multiplier=strength)
    runs[name] = (exp, shrink)
  latency_exp, flops_exp = runs['latency'][0], runs['flops'][0]
  matched, multiplier, ratio = match_latency(
      flops_exp, latency_exp.structure('shrunk'), flops_exp.structure('shrunk'),
      batch_size=batch_size)
  flops_exp.write_structure('matched', matched)
  print('seed %d: FLOP structure x%.3f measures %.3f of the latency '
        'structure' % (seed, multiplier, ratio))
  predicted = structure_cost.StructureCost(
      latency_exp.original_model(),
      resource_function.latency_function_factory(profile_path, batch_size))
  flop_cost = structure_cost.StructureCost(predicted.traced)
  results = {}
  for name, exp, structure in (
      ('latency', latency_exp, latency_exp.structure('shrunk')),
      ('flops', flops_exp, matched)):
    trained = cycle._train_structure(exp, 'retrained', structure)  # pylint: disable=protected-access
    results[name] = {
        'test_accuracy': trained['test_accuracy'],
        'predicted_latency_ms': predicted(structure) / 1e6,
        'flops': flop_cost(structure), 'structure': structure,
        'shrink_final_cost': runs[name][1]['final_cost'],
    }
  results['flops']['multiplier'] = multiplier
  results['flops']['measured_latency_ratio'] = ratio
  atomic_file.write_json_atomically(results, os.path.join(base,
                                                          'result.json'))
  return results


def write_report(output_dir, results):
  """report.json and report.md: accuracy at equal measured latency."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  lines = ['| seed | latency reg. acc. (%) | FLOP reg. acc. (%) | difference '
           '(points) | FLOP structure latency / latency structure\'s | '
           'predicted latency (ms) | MFLOPs (latency, FLOP) |',
           '|---|---:|---:|---:|---:|---:|---:|']
  differences = []
  for seed, r in sorted(results.items()):
    lat, flo = r['latency'], r['flops']
    difference = 100 * (lat['test_accuracy'] - flo['test_accuracy'])
    differences.append(difference)
    lines.append('| %s | %.2f | %.2f | %+.2f | %.3f | %.3f | %.2f, %.2f |' % (
        seed, 100 * lat['test_accuracy'], 100 * flo['test_accuracy'],
        difference, flo['measured_latency_ratio'],
        lat['predicted_latency_ms'], lat['flops'] / 1e6,
        flo['flops'] / 1e6))
  lines.append('\nLatency regularizer minus FLOP regularizer at equal measured '
               'latency: %+.2f +- %.2f points over %d seeds.' % (
                   np.mean(differences), np.std(differences),
                   len(differences)))
  text = '\n'.join(lines)
  atomic_file.write_text_atomically(text + '\n',
                                    os.path.join(output_dir, 'report.md'))
  atomic_file.write_json_atomically(results,
                                    os.path.join(output_dir, 'report.json'))
  return text


@gin.configurable
def calibration(model, profile_path, batch_size: int = 64,
                repeats: int = 15, clock: str = 'wall',
                model_structures: int = 0):
  """Calibrates the profile of `model` unless `profile_path` exists.

  `clock` and `model_structures` as in `latency.calibration.calibrate`.
  """
  from morph_net.latency import calibration as calibration_lib  # pylint: disable=g-import-not-at-top
  if os.path.exists(profile_path):
    print('profile: reusing %s' % profile_path)
    return
  profile = calibration_lib.calibrate(
      model, batch_size, repeats=repeats, clock=clock,
      model_structures=model_structures)
  calibration_lib.save_profile(profile, profile_path)
  print(calibration_lib.summary(profile))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % argv[1:])
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  timing.pin_threads(1, 1)
  from examples.experiment import cycle  # pylint: disable=g-import-not-at-top
  from examples.experiment import run_cycle  # pylint: disable=g-import-not-at-top
  gin.add_config_file_search_path(run_cycle.CONFIG_DIR)
  gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings)
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  profile_path = os.path.join(FLAGS.output_dir, 'profile.json')
  exp = cycle.Experiment(os.path.join(FLAGS.output_dir, 'original'))
  batch_size = gin.query_parameter('run_seed.batch_size')
  calibration(exp.original_model(), profile_path, batch_size=batch_size)
  results = {}
  for seed in FLAGS.seeds:
    results[seed] = run_seed(FLAGS.output_dir, int(seed), profile_path)
    print(write_report(FLAGS.output_dir, results))
    sys.stdout.flush()
  print(json.dumps({s: {k: v['test_accuracy'] for k, v in r.items()}
                    for s, r in results.items()}, sort_keys=True))


if __name__ == '__main__':
  define_flags()
  app.run(main)
