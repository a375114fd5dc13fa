r"""How well three latency models predict the real latency of rebuilt models.

  python benchmarks/latency_prediction.py --models=MobileNetV2:96,ResNet50:64 \
      --structures=20 --batch_size=8 --repeats=15 --output=/tmp/latency.json

For each model (keras.applications, weights=None, 10 classes, the given
input size), in one process:

1. Calibrate a latency profile on this machine (`latency_calibration`,
   the model's own layers; `--profile_dir` keeps and reuses them).
2. Draw `--structures` random structures: every changeable channel group
   keeps a fraction s x u of its width, s ~ U(0.25, 1) per structure and
   u ~ U(0.75, 1.25) per group, capped at 1. Rebuild each
   (`morph_net.surgery.rebuild`).
3. Measure the forward pass (`tf.function`, batch `--batch_size`) of the
   original and every rebuilt model, interleaved: each of `--repeats` rounds
   calls every model once; medians.
4. Predict each structure's latency with
   (a) FLOPs x one scale factor, fitted on the original model (its measured
       latency / its FLOPs);
   (b) the built-in roofline table's closest device: the device whose
       prediction of the original model is nearest (in ratio) to its
       measured latency; shown raw and scaled to the original like (a);
   (c) the calibrated profile, raw (`StructureCost` with the profile: the
       `get_cost()` of a latency regularizer on the rebuilt model).
   and print the mean absolute percentage error and the Spearman rank
   correlation over the random structures (the original, where (a) and (b)
   are fitted, is left out).

Threads are pinned before TensorFlow starts (`--threads` intra-op, 1
inter-op). On a shared machine, check the load first (`uptime`).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from morph_net.keras import latency_timing  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='MobileNetV2:96,ResNet50:64',
                      help='Comma-separated keras.applications name:size.')
  parser.add_argument('--structures', type=int, default=20)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--calibration_repeats', type=int, default=15)
  parser.add_argument('--threads', type=int, default=1)
  parser.add_argument('--statistic', default='median',
                      choices=['median', 'min'],
                      help='Summary of the repeats (min: busy machines).')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--profile_dir', default=None,
                      help='Reuse <dir>/<model>_<size>.json if present, '
                      'else write it there.')
  parser.add_argument('--output', default=None, help='JSON report.')
  return parser.parse_args(argv)


def random_structures(channels, count, rng):
  """`count` random structures of the changeable groups (see the docstring)."""
  groups = [g for g in channels.groups() if channels.can_change_width(g[0])[0]]
  structures = []
  for _ in range(count):
    level = rng.uniform(0.25, 1.0)
    structure = {}
    for group in groups:
      fraction = min(1.0, level * rng.uniform(0.75, 1.25))
      width = max(1, int(round(channels.original_width(group[0]) * fraction)))
      structure.update({name: width for name in group})
    structures.append(structure)
  return structures


def measure(models, batch_size, size, repeats, statistic):
  """ns of each model's forward pass (median or min), interleaved."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.constant(np.random.RandomState(0).rand(
      batch_size, size, size, 3).astype(np.float32))
  calls = []
  for model in models:
    function = tf.function(lambda t, m=model: m(t, training=False))
    calls.append(lambda f=function: f(x))
  return latency_timing.time_interleaved(calls, repeats, warmup=2,
                                         statistic=statistic)


def errors_of(predicted, measured):
  """(mean absolute percentage error, Spearman rank correlation)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  predicted, measured = np.asarray(predicted), np.asarray(measured)
  mape = float(np.mean(np.abs(predicted / measured - 1.0)))
  return mape, float(stats.spearmanr(predicted, measured)[0])


def closest_device(traced, structure_cost, resource_function, batch_size,
                   measured_original):
  """(name, coster) of the table device nearest the measured original."""
  import math  # pylint: disable=g-import-not-at-top
  best = None
  for name in sorted(resource_function.PEAK_COMPUTE):
    if name.endswith('_LATENCY'):
      continue  # Test devices.
    coster = structure_cost.StructureCost(
        traced, resource_function.latency_function_factory(name, batch_size))
    distance = abs(math.log(coster({}) / measured_original))
    if best is None or distance < best[0]:
      best = (distance, name, coster)
  return best[1], best[2]


def run_model(spec, args, rng):
  """Calibrates, rebuilds, measures and predicts one model; returns rows."""
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.keras import latency_calibration  # pylint: disable=g-import-not-at-top
  from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top
  from morph_net.keras import tracing  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import latency_profile  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import resource_function  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top

  name, size = spec.split(':')
  size = int(size)
  model = getattr(keras.applications, name)(
      weights=None, classes=10, input_shape=(size, size, 3))
  start = time.time()
  path = (os.path.join(args.profile_dir, '%s_%d_b%d.json' % (
      name, size, args.batch_size)) if args.profile_dir else None)
  # A profile measured with another statistic or batch is not reused.
  if path:
    path = path.replace('.json', '_%s.json' % args.statistic)
  if path and os.path.exists(path):
    profile = latency_profile.LatencyProfile.load(path)
    print('%s: profile %s' % (name, path))
  else:
    profile = latency_calibration.calibrate(
        model, args.batch_size, repeats=args.calibration_repeats,
        statistic=args.statistic)
    if path:
      latency_calibration.save_profile(profile, path)
    print('%s: calibrated %d layers in %.1f s' % (
        name, profile.metadata['layers'], profile.metadata['seconds']))
  print(latency_calibration.summary(profile))
  traced = tracing.TracedModel(model)
  flops = structure_cost.StructureCost(traced)
  calibrated = structure_cost.StructureCost(
      traced, resource_function.latency_function_factory(
          profile, args.batch_size))
  structures = random_structures(flops.channels, args.structures, rng)
  start = time.time()
  models = [model] + [rebuild.rebuild(model, s, channels=flops.channels)
                      for s in structures]
  print('%s: %d structures rebuilt in %.1f s' % (name, len(structures),
                                                   time.time() - start))
  start = time.time()
  measured = measure(models, args.batch_size, size, args.repeats,
                     args.statistic)
  print('%s: measured %d models x %d rounds in %.1f s' % (
      name, len(models), args.repeats, time.time() - start))
  device, roofline = closest_device(traced, structure_cost, resource_function,
                                    args.batch_size, measured[0])
  all_structures = [{}] + structures
  flop_counts = [flops(s) for s in all_structures]
  roofline_ns = [roofline(s) for s in all_structures]
  predictions = {
      '(a) FLOPs x scale': [f * measured[0] / flop_counts[0]
                            for f in flop_counts],
      '(b) roofline %s, raw' % device: roofline_ns,
      '(b) roofline %s, scaled' % device: [
          r * measured[0] / roofline_ns[0] for r in roofline_ns],
      '(c) calibrated profile': [calibrated(s) for s in all_structures],
  }
  rows = {}
  for label, values in predictions.items():
    mape, spearman = errors_of(values[1:], measured[1:])
    rows[label] = {'mape': mape, 'spearman': spearman,
                   'original_error': values[0] / measured[0] - 1.0}
  return {'model': name, 'size': size, 'device': device,
          'measured_ms': [m / 1e6 for m in measured],
          'predicted_ms': {k: [v / 1e6 for v in vs]
                           for k, vs in predictions.items()},
          'flops': flop_counts, 'metrics': rows,
          'calibration_seconds': profile.metadata.get('seconds')}


def main(argv=None):
  args = parse_args(argv)
  latency_timing.pin_threads(args.threads, 1)
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(args.seed)
  print('device: %s; load average %s' % (latency_timing.describe_device(),
                                         ' '.join('%.2f' % v for v in
                                                  os.getloadavg())))
  results = []
  for spec in args.models.split(','):
    results.append(run_model(spec, args, rng))
    result = results[-1]
    print('\n%s %dx%d, batch %d, %d random structures: measured %.1f-%.1f ms '
          '(original %.1f ms)' % (
              result['model'], result['size'], result['size'],
              args.batch_size, args.structures,
              min(result['measured_ms'][1:]), max(result['measured_ms'][1:]),
              result['measured_ms'][0]))
    print('%-36s %8s %9s %14s' % ('predictor', 'MAPE', 'Spearman',
                                   'original err'))
    for label, row in result['metrics'].items():
      print('%-36s %7.1f%% %9.3f %13.1f%%' % (
          label, 100 * row['mape'], row['spearman'],
          100 * row['original_error']))
    sys.stdout.flush()
  print('load average after: %s' % ' '.join('%.2f' % v
                                            for v in os.getloadavg()))
  if args.output:
    from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
    atomic_file.write_json_atomically(
        {'args': vars(args), 'device': latency_timing.describe_device(),
         'results': results}, args.output)


if __name__ == '__main__':
  main()
