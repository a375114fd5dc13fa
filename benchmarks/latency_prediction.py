r"""How well three latency models predict the real latency of rebuilt models.

  python benchmarks/latency_prediction.py --models=MobileNetV2:96,ResNet50:64 \
      --structures=20 --batch_size=8 --repeats=15 --clock=cpu \
      --output=/tmp/latency.json
  python benchmarks/latency_prediction.py --refit=/tmp/latency.json \
      --whole_model_share=0.9     # refit (c) from the saved measurements

For each model (keras.applications, weights=None, 10 classes, the given
input size), in one process:

1. Calibrate a latency profile on this machine (`latency.calibration`:
   the model's own layers at several widths, and the whole model at the width
   fractions and at `--model_structures` random structures drawn with
   `--calibration_seed`; `--profile_dir` keeps and reuses profiles). The
   profile is fitted before the test structures are drawn, from another
   seed: no test structure is in the fit.
2. Draw `--structures` random test structures with `--seed`
   (`latency.variants.random_structures`: every changeable channel group
   keeps a fraction s x u of its width, s ~ U(0.25, 1) per structure and
   u ~ U(0.75, 1.25) per group, capped at 1). Rebuild each
   (`morph_net.surgery.rebuild`).
3. Measure the forward pass (`timing.model_call`: a concrete function, as
   deployed; batch `--batch_size`) of the
   original and every rebuilt model warm, as deployed
   (`latency.measurement.measure`, the method calibration uses too): in
   groups small enough for the kernel caches (the budget found by
   measuring, or `--budget`), each group's models interleaved over
   `--repeats` rounds after `--warmup` calls each; medians (or min) of the
   wall time or (`--clock=cpu`) of the process's CPU time, with each
   model's IQR; a model whose IQR / median is above `--unstable_spread` is
   measured again, up to `--max_attempts` times, then flagged.
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
   are fitted, is left out), the error on the original, and the rebuilt
   structures with fewer FLOPs than the original measured slower than it
   that the profile did not predict slower (`surprises`).

`--output` keeps every measurement (calibration samples with their ops,
the test structures' ops and times); `--refit` fits (c) again from them
with another `--whole_model_share`, timing nothing.

Threads are pinned before TensorFlow starts (`--threads` intra-op,
`--inter_op_threads` inter-op; the deployment's settings), and printed with
the CPU's model name. On a shared machine, check the load first (`uptime`)
or use `--clock=cpu`.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from morph_net.latency import timing  # pylint: disable=g-import-not-at-top,wrong-import-position


def add_measurement_arguments(parser):
  """Adds the flags of how models are timed to an argparse parser.

  The threads (`--threads`, `--inter_op_threads`) and the flags
  `measurement_settings` reads but `--repeats`.

  Args:
    parser: an `argparse.ArgumentParser`.
  """
  parser.add_argument('--threads', type=int, default=1,
                      help='Intra-op threads (0: TensorFlow default).')
  parser.add_argument('--inter_op_threads', type=int, default=1,
                      help='Inter-op threads (0: TensorFlow default).')
  parser.add_argument('--warmup', type=int, default=3,
                      help='Untimed calls of each model before its rounds.')
  parser.add_argument('--budget', type=int, default=None,
                      help='Kernel weight per timed group (default: found '
                      'by measuring).')
  parser.add_argument('--no_probe', action='store_true',
                      help='Without --budget, use the default budget '
                      'instead of measuring it.')
  parser.add_argument('--unstable_spread', type=float, default=0.1,
                      help='IQR / median above which a model is measured '
                      'again.')
  parser.add_argument('--max_attempts', type=int, default=3)
  parser.add_argument('--statistic', default='median',
                      choices=['median', 'min'],
                      help='Summary of the repeats (min: busy machines).')
  parser.add_argument('--allocator', default='steady',
                      choices=['steady', 'default'],
                      help='steady: memory reused from call to call, as a '
                      'serving process does (timing.set_allocator); '
                      "default: the C library's defaults.")
  parser.add_argument('--clock', default='wall', choices=['wall', 'cpu'],
                      help='Wall time, or the CPU time of the process '
                      '(with --threads=1: steadier on a shared machine).')


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='MobileNetV2:96,ResNet50:64',
                      help='Comma-separated keras.applications name:size.')
  parser.add_argument('--structures', type=int, default=20)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--calibration_repeats', type=int, default=15)
  add_measurement_arguments(parser)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--profile_dir', default=None,
                      help='Reuse <dir>/<model>_<size>.json if present, '
                      'else write it there.')
  parser.add_argument('--model_structures', type=int, default=8,
                      help='Random structures timed whole in calibration '
                      '(drawn with --calibration_seed, not --seed).')
  parser.add_argument('--calibration_seed', type=int, default=1000)
  parser.add_argument('--whole_model_share', type=float, default=0.5,
                      help='Fit weight of the whole-model samples.')
  parser.add_argument('--misalignment', default='kind',
                      choices=['kind', 'shared', 'none'],
                      help='How the fit models widths that are not '
                      'multiples of the profile\'s multiple (a factor per '
                      'op kind, one for all, none; latency.fit).')
  parser.add_argument('--no_misaligned', action='store_true',
                      help='Calibrate without the variants at misaligned '
                      'widths (CalibrationSettings.misaligned).')
  parser.add_argument('--output', default=None, help='JSON report, with '
                      'every measurement (for --refit).')
  parser.add_argument('--refit', default=None, help='Refit the profiles '
                      'from the measurements of this --output report and '
                      'print the tables again; times nothing.')
  return parser.parse_args(argv)


def measurement_settings(args):
  """The `measurement.MeasurementSettings` of the flags."""
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  return measurement.MeasurementSettings(
      repeats=args.repeats, warmup=args.warmup, statistic=args.statistic,
      clock=args.clock, budget=args.budget, probe=not args.no_probe,
      unstable_spread=args.unstable_spread, max_attempts=args.max_attempts,
      allocator=args.allocator)


def input_shape(size):
  """The input shape without batch: (size, size, 3) for an image size (an
  int), else the given dimensions as a tuple (e.g. (28, 28, 1))."""
  if isinstance(size, int):
    return (size, size, 3)
  return tuple(int(d) for d in size)


def measure(models, batch_size, size, settings, labels, ops):
  """Each model's forward pass timed warm (`measurement.measure`).

  The first model (the original) is also timed in every group (shared):
  its spread over the groups shows how much the machine drifted between
  them, and every model's value is corrected by it
  (`MeasurementReport.drift_corrected`: each group brought to the
  original's median over the groups). `size` is the image size (RGB) or
  the input shape (`input_shape`).

  Returns:
    (ns per model: the statistic, drift-corrected; the MeasurementReport,
    whose `values()` are the uncorrected statistics).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  x = tf.constant(np.random.RandomState(0).rand(
      batch_size, *input_shape(size)).astype(np.float32))
  calls = [timing.model_call(model, x) for model in models]
  report = measurement.measure(
      calls, labels, [measurement.kernel_weight(o) for o in ops], settings,
      shared=calls[:1], shared_labels=['%s (anchor)' % labels[0]])
  return report.drift_corrected(0), report


def surprises(flops, measured, predicted):
  """Rebuilt structures (index >= 1) with fewer FLOPs than the original
  (index 0) measured slower than it, that `predicted` does not put above
  the original."""
  return [i for i in range(1, len(measured))
          if flops[i] < flops[0] and measured[i] > measured[0] and
          not predicted[i] > predicted[0]]


def slower_p_value(times, reference):
  """The p-value of "`times` run slower than `reference`": a one-sided
  Mann-Whitney U test (scipy.stats.mannwhitneyu, alternative 'greater')
  of the two sets of per-round times."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return float(stats.mannwhitneyu(times, reference,
                                  alternative='greater').pvalue)


# The level of the one-sided test of "slower than the original".
SLOWER_ALPHA = 0.05


def significant_surprises(result, indices, alpha=SLOWER_ALPHA):
  """[(index, p)] of the surprises (`surprises`' indices) whose per-round
  times are greater than the original's in the same group by a one-sided
  Mann-Whitney U test at `alpha` (`slower_p_value`); None when `result`
  keeps no per-round times (its 'measurement', `MeasurementReport.
  to_dict()`, with the original shared in every group)."""
  report = result.get('measurement')
  if not report or not report.get('shared'):
    return None
  measurements = report['measurements']
  significant = []
  for i in indices:
    times = measurements[i]['times_ns']
    anchor = report['shared'][measurements[i]['group']][0]['times_ns']
    p = slower_p_value(times, anchor)
    if p < alpha:
      significant.append((i, p))
  return significant


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


def model_ops(model, batch_size, size):
  """{multiple: (kind, FLOPs, bytes) of every costed op of the model's
  forward pass at channels rounded up to it}, for the candidate multiples.
  `size` as in `measure`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import latency_profile  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import profile_resource  # pylint: disable=g-import-not-at-top
  graph = tf.function(lambda t: model(t, training=False)).get_concrete_function(
      tf.TensorSpec((batch_size,) + input_shape(size), tf.float32)).graph
  costed = [op for op in graph.get_operations()
            if latency_profile.op_kind(op.type)]
  return {m: [profile_resource.op_features(op, batch_size, m)
              for op in costed]
          for m in latency_profile.CANDIDATE_MULTIPLES}


def _ops_to_json(ops):
  return [list(o) for o in ops]


def _aligned_from_json(value):
  """{multiple: ops} from its JSON form (None stays None)."""
  if not value:
    return None
  return {int(m): [tuple(o) for o in ops] for m, ops in value.items()}


def samples_to_json(samples):
  return [{'ops': _ops_to_json(s.ops), 'latency_ns': s.latency_ns,
           'label': s.label, 'weight': s.weight,
           'whole_model': s.whole_model, 'anchor': s.anchor,
           'rounded_to': s.rounded_to,
           'aligned': ({str(m): _ops_to_json(o) for m, o in s.aligned.items()}
                       if s.aligned else None)} for s in samples]


def samples_from_json(values):
  """fit.Samples from their JSON form.

  Reports written before samples kept `whole_model` and `anchor`: the
  whole models are the samples weighted apart from the layers (weight not
  1), the anchor the one labelled '<model> x1.00' (the original).
  """
  from morph_net.latency import fit  # pylint: disable=g-import-not-at-top
  return [fit.Sample(
      [tuple(o) for o in v['ops']], v['latency_ns'], v['label'], v['weight'],
      _aligned_from_json(v.get('aligned')),
      whole_model=v.get('whole_model', v['weight'] != 1.0),
      anchor=v.get('anchor', v['weight'] != 1.0 and
                   v['label'].endswith(' x1.00')),
      rounded_to=v.get('rounded_to', 1)) for v in values]


def structure_sample(ops):
  """A fit.Sample of a structure's saved ops ({multiple: ops}, or the ops
  of reports written before profiles were aligned)."""
  from morph_net.latency import fit  # pylint: disable=g-import-not-at-top
  if isinstance(ops, dict):
    aligned = _aligned_from_json(ops)
    return fit.Sample(aligned[1], 1.0, aligned=aligned)
  return fit.Sample([tuple(o) for o in ops], 1.0)


def reweighted(samples, share):
  """The samples with the whole-model ones (weight != 1) carrying `share`."""
  wholes = sum(1 for s in samples if s.weight != 1.0)
  layers = len(samples) - wholes
  weight = (share / (1.0 - share) * layers / max(wholes, 1)) ** 0.5
  return [s._replace(weight=1.0 if s.weight == 1.0 else weight)
          for s in samples]


def run_model(spec, args, rng):
  """Calibrates, rebuilds, measures and predicts one model; returns rows."""
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.latency import calibration  # pylint: disable=g-import-not-at-top
  from morph_net.latency import variants  # pylint: disable=g-import-not-at-top
  from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top
  from morph_net.keras import tracing  # pylint: disable=g-import-not-at-top
  from morph_net.latency import fit  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import latency_profile  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import resource_function  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top

  name, size = spec.split(':')
  size = int(size)
  model = getattr(keras.applications, name)(
      weights=None, classes=10, input_shape=(size, size, 3))
  path = (os.path.join(args.profile_dir, '%s_%d_b%d_%s_%s.json' % (
      name, size, args.batch_size, args.statistic, args.clock))
          if args.profile_dir else None)
  samples = None
  if path and os.path.exists(path):
    profile = latency_profile.LatencyProfile.load(path)
    print('%s: profile %s' % (name, path))
  else:
    samples, metadata = calibration.measure(
        model, args.batch_size, repeats=args.calibration_repeats,
        warmup=args.warmup, statistic=args.statistic,
        model_structures=args.model_structures,
        seed=args.calibration_seed, whole_model_share=args.whole_model_share,
        clock=args.clock, budget=args.budget, probe=not args.no_probe,
        unstable_spread=args.unstable_spread,
        max_attempts=args.max_attempts, misaligned=not args.no_misaligned,
        allocator=args.allocator)
    profile = fit.fit_profile(
        samples, args.batch_size, timing.describe_device(), metadata,
        misalignment=args.misalignment)
    if path:
      calibration.save_profile(profile, path)
    timed = metadata['measurement']
    print('%s: calibrated on %d layers and %d whole models in %.1f s '
          '(%d groups, budget %d %s; %d flagged unstable); preferred '
          'multiple %d' % (
              name, profile.metadata['layers'],
              profile.metadata['whole_model_samples'], metadata['seconds'],
              timed['groups'], timed['budget'], timed['budget_source'],
              len(timed['flagged']), profile.preferred_multiple))
  print(calibration.summary(profile))
  traced = tracing.TracedModel(model)
  flops = structure_cost.StructureCost(traced)
  calibrated = structure_cost.StructureCost(
      traced, resource_function.latency_function_factory(
          profile, args.batch_size))
  structures = variants.random_structures(flops.channels,
                                          args.structures, rng)
  start = time.time()
  models = [model] + [rebuild.rebuild(model, s, channels=flops.channels)
                      for s in structures]
  print('%s: %d structures rebuilt in %.1f s' % (name, len(structures),
                                                   time.time() - start))
  start = time.time()
  labels = ['original'] + ['s%d' % i for i in range(len(structures))]
  structure_ops = [model_ops(m, args.batch_size, size) for m in models]
  measured, report = measure(models, args.batch_size, size,
                             measurement_settings(args), labels,
                             [ops[1] for ops in structure_ops])
  print('%s: measured %d models x %d rounds in %.1f s (%d groups, budget '
        '%d %s)' % (name, len(models), args.repeats, time.time() - start,
                    len(report.groups), report.budget,
                    report.budget_source))
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
  return {'model': name, 'size': size, 'device': device,
          'measured_ms': [m / 1e6 for m in measured],
          'spread': [m.spread for m in report.measurements],
          'anchor_ms': [group[0].value_ns / 1e6 for group in report.shared],
          'iqr_ms': [(m.q3_ns - m.q1_ns) / 1e6
                     for m in report.measurements],
          'flagged': report.flagged(), 'measurement': report.to_dict(),
          'preferred_multiple': profile.preferred_multiple,
          'predicted_ms': {k: [v / 1e6 for v in vs]
                           for k, vs in predictions.items()},
          'flops': flop_counts, 'metrics': metrics(predictions, measured),
          'calibration_seconds': profile.metadata.get('seconds'),
          'calibration_samples': (samples_to_json(samples)
                                  if samples is not None else None),
          'structure_ops': [{str(m): _ops_to_json(o)
                             for m, o in ops.items()}
                            for ops in structure_ops]}


def metrics(predictions, measured):
  """{label: MAPE, Spearman, error on the original} over the structures."""
  rows = {}
  for label, values in predictions.items():
    mape, spearman = errors_of(values[1:], measured[1:])
    rows[label] = {'mape': mape, 'spearman': spearman,
                   'original_error': values[0] / measured[0] - 1.0}
  return rows


def refit(result, args):
  """The result with (c) from a profile refitted to its saved samples."""
  from morph_net.latency import calibration  # pylint: disable=g-import-not-at-top
  from morph_net.latency import fit  # pylint: disable=g-import-not-at-top
  samples = reweighted(samples_from_json(result['calibration_samples']),
                       args.whole_model_share)
  profile = fit.fit_profile(samples, args.batch_size,
                           misalignment=args.misalignment)
  print(calibration.summary(profile))
  measured = [m * 1e6 for m in result['measured_ms']]
  predictions = {k: [v * 1e6 for v in vs]
                 for k, vs in result['predicted_ms'].items()}
  predictions['(c) calibrated profile'] = [
      fit.predict_sample(profile, structure_sample(ops))
      for ops in result['structure_ops']]
  result = dict(result)
  result['metrics'] = metrics(predictions, measured)
  result['predicted_ms'] = {k: [v / 1e6 for v in vs]
                            for k, vs in predictions.items()}
  return result


def print_table(result, batch_size):
  measured = result['measured_ms']
  print('\n%s %dx%d, batch %d, %d random structures: measured %.1f-%.1f ms '
        '(original %.1f ms)' % (
            result['model'], result['size'], result['size'], batch_size,
            len(measured) - 1, min(measured[1:]), max(measured[1:]),
            measured[0]))
  print('%-36s %8s %9s %14s' % ('predictor', 'MAPE', 'Spearman',
                                 'original err'))
  for label, row in result['metrics'].items():
    print('%-36s %7.1f%% %9.3f %13.1f%%' % (
        label, 100 * row['mape'], row['spearman'],
        100 * row['original_error']))
  if result.get('spread'):
    spread = sorted(result['spread'])
    print('spread (IQR / median) of the %d models: median %.1f%%, max '
          '%.1f%%; flagged unstable: %s' % (
              len(spread), 100 * spread[len(spread) // 2], 100 * spread[-1],
              ', '.join(result.get('flagged') or []) or 'none'))
  anchors = result.get('anchor_ms')
  if anchors:
    print('the original timed in each of the %d groups: %.2f-%.2f ms' % (
        len(anchors), min(anchors), max(anchors)))
  profile = result['predicted_ms']['(c) calibrated profile']
  if result.get('iqr_ms'):
    print('%-10s %7s %12s %8s %14s' % ('model', 'FLOPs', 'measured ms',
                                        'IQR ms', 'profile ms'))
    for i, (ms, iqr) in enumerate(zip(measured, result['iqr_ms'])):
      print('%-10s %6.1f%% %12.2f %8.2f %14.2f' % (
          'original' if i == 0 else 's%d' % (i - 1),
          100.0 * result['flops'][i] / result['flops'][0], ms, iqr,
          profile[i]))
  slower = surprises(result['flops'], measured, profile)
  print('rebuilt structures with fewer FLOPs measured slower than the '
        'original, not predicted by the profile: %d%s' % (
            len(slower), ''.join(
                '\n  s%d: %.1f%% of the FLOPs, measured %.2f ms (original '
                '%.2f), predicted %.2f ms (original %.2f)' % (
                    i - 1, 100 * result['flops'][i] / result['flops'][0],
                    measured[i], measured[0], profile[i], profile[0])
                for i in slower)))
  significant = significant_surprises(result, slower)
  if significant is not None and slower:
    print('  of them slower by a one-sided Mann-Whitney U test of the '
          'per-round times against the original\'s in the same group '
          '(p < %.2f): %d%s' % (SLOWER_ALPHA, len(significant), ''.join(
              ' s%d (p = %.3g)' % (i - 1, p) for i, p in significant)))
  sys.stdout.flush()


def main(argv=None):
  args = parse_args(argv)
  if args.refit:
    with open(args.refit) as f:
      report = json.load(f)
    for result in report['results']:
      if result.get('calibration_samples'):
        print_table(refit(result, args), report['args']['batch_size'])
    return
  timing.pin_threads(args.threads, args.inter_op_threads)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(args.seed)
  start = time.time()
  print('CPU: %s' % timing.cpu_model())
  print('device: %s; load average %s' % (timing.describe_device(),
                                         ' '.join('%.2f' % v for v in
                                                  os.getloadavg())))
  print('oneDNN kernels: %s; primitive caches: TensorFlow %d per thread, '
        'oneDNN %d (ONEDNN_PRIMITIVE_CACHE_CAPACITY)' % (
            {True: 'on', False: 'off', None: 'unknown'}[
                measurement.onednn_enabled()],
            measurement.TF_PRIMITIVE_CACHE,
            measurement.primitive_cache_capacity()))
  results = []
  for spec in args.models.split(','):
    results.append(run_model(spec, args, rng))
    print_table(results[-1], args.batch_size)
  print('load average after: %s; %.0f s in all' % (
      ' '.join('%.2f' % v for v in os.getloadavg()), time.time() - start))
  if args.output:
    from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
    atomic_file.write_json_atomically(
        {'args': vars(args), 'device': timing.describe_device(),
         'cpu': timing.cpu_model(), 'results': results}, args.output)


if __name__ == '__main__':
  main()
