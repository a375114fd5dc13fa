r"""Verified speed-ups: a latency-targeted shrink, measured, and its accuracy.

  python3 benchmarks/latency_speedup.py --output_dir=/tmp/latency_speedup
  python3 benchmarks/latency_speedup.py --output_dir=/tmp/speedup_smoke \
      --networks=main_job_cnn --smoke          # every stage, tiny budget

For each network (by default `main_job_cnn`: the README main job's CNN,
and `mobilenet_v2`: keras.applications MobileNetV2 as
`networks.build_model` builds it, 32x32x3; also the results table's `vgg`
and `resnet`) on Fashion-MNIST:

1. Calibrate a latency profile on this machine
   (`morph_net.latency.calibration.calibrate`, at `--batch_size`, in a
   child process with the threads pinned to `--threads` intra-op and
   `--inter_op_threads` inter-op; MobileNetV2's nested base timed layer
   by layer like the rest, as calibration calls nested models flat; kept in
   `<output_dir>/<network>/profile.json` and reused, its measurements in
   `samples.json`).
2. Per seed, three structures, each predicted by the profile at the same
   latency:
   - `latency`: GammaLatencyRegularizer on the profile, trained with
     `CostTargetCallback` to `--target` x the original's predicted latency
     (`cost_target.train_to_target`: until the cost has held within
     `--tolerance` of the target for `--hold` epochs, or `--max_epochs`);
     its structure is `expansion.aligned_structure` (the alive counts
     rounded up to the profile's preferred multiple, then widened in
     steps of it to the target and not above: the profile charges the
     misaligned widths the controller trained with extra, so the rounded
     counts alone are predicted below the target; kept as 'aligned').
   - `flops`: GammaFlopsRegularizer trained the same way to a FLOP target:
     the FLOPs of the one width multiplier that the profile predicts at the
     latency target; then scaled by one multiplier (and single groups,
     `expansion.expand_to_cost` on the profile) to the latency structure's
     predicted latency.
   - `uniform`: the original widths scaled the same way to the latency
     structure's predicted latency (one multiplier, rounded to the
     profile's multiple, then single groups within 1%).
3. Measure the original and every structure rebuilt
   (`morph_net.latency.measurement`, via `latency_prediction.measure`: one
   run, warm, groups the kernel caches hold, the original timed in every
   group), in a child process with the same threads as the calibration.
   Reported: each latency structure's measured latency against its target,
   and the measured latency of the flops and uniform structures over the
   latency structure's of the same seed (how close "equal latency" is).
4. Retrain every structure from scratch with the same recipe
   (`results_methods.Bench.train_structure`: `--retrain_epochs` of Adam with
   cosine decay) and take its test accuracy (batch-norm statistics
   re-estimated on 2,048 training images).
5. Print and write `<output_dir>/table.md`: every cell, the accuracy of each
   method (mean, sample std, 95% t interval over the seeds) and the paired
   differences latency - flops, latency - uniform and flops - uniform
   (`examples/experiment/stats.py`), and the rebuilt structures with fewer
   FLOPs than the original that were measured slower than it and that the
   profile did not predict slower: counted twice, by their medians
   (strict) and by a one-sided Mann-Whitney U test of their per-round
   times against the original's in the same group at 0.05.

Every (network, method, seed) cell is a JSON file under
`<output_dir>/<network>/cells/`, written atomically when its structure is
known and again with its accuracy, and skipped when complete: stop the
run and start it again (a flops or uniform cell whose latency cell was
made again is matched to it again and retrained). The measurement is kept
in `<output_dir>/<network>/measurement.json` and redone only when the
structures changed.
"""

import argparse
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ''):  # Run as a script: the repository's packages.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

NETWORKS = ('main_job_cnn', 'mobilenet_v2', 'vgg', 'resnet')
# The default run; `vgg` and `resnet` are the results table's networks
# (`results_table.py`, its latency rows).
DEFAULT_NETWORKS = ('main_job_cnn', 'mobilenet_v2')
METHODS = ('latency', 'flops', 'uniform')
# Paired differences reported: (method, baseline).
DIFFERENCES = (('latency', 'flops'), ('latency', 'uniform'),
               ('flops', 'uniform'))
STAGES = ('all', 'calibrate', 'measure')
# Where --stop_after may stop, in the order the stages run per network.
STOPS = ('calibrate', 'structures', 'measure', 'table')
# The flags the cached profiles and cells depend on (`check_settings`).
SETTINGS = ('target', 'batch_size', 'threads', 'inter_op_threads',
            'statistic', 'clock', 'allocator', 'calibration_repeats',
            'model_structures', 'train_examples',
            'test_examples', 'train_batch_size', 'learning_rate',
            'threshold', 'tolerance', 'hold', 'max_epochs',
            'retrain_epochs')
# What --smoke sets (a tiny budget through every stage).
SMOKE = {'seeds': '0,1', 'train_examples': 256, 'test_examples': 200,
         'max_epochs': 1, 'hold': 1, 'retrain_epochs': 1,
         'calibration_repeats': 3, 'model_structures': 0, 'repeats': 3,
         'warmup': 1, 'max_attempts': 1}


def parse_args(argv=None):
  """The command line; --smoke replaces the budget flags by `SMOKE`."""
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output_dir', default='/tmp/morph_net_latency_speedup')
  parser.add_argument('--networks', default=','.join(DEFAULT_NETWORKS),
                      help='Comma-separated, of %s.' % ', '.join(NETWORKS))
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--target', type=float, default=0.6,
                      help='Latency target, a fraction of the original '
                      "network's predicted latency.")
  parser.add_argument('--batch_size', type=int, default=64,
                      help='Inference batch size of the profile and the '
                      'measurement.')
  parser.add_argument('--calibration_repeats', type=int, default=15)
  parser.add_argument('--model_structures', type=int, default=8,
                      help='Random whole-model structures in calibration.')
  parser.add_argument('--repeats', type=int, default=30,
                      help='Timed rounds of the measurement.')
  # --threads, --inter_op_threads (calibration and measurement; training
  # keeps TensorFlow's defaults), --warmup, --clock, --statistic ...
  latency_prediction.add_measurement_arguments(parser)
  parser.add_argument('--train_examples', type=int, default=6000)
  parser.add_argument('--test_examples', type=int, default=0,
                      help='Test images (0: all 10,000).')
  parser.add_argument('--train_batch_size', type=int, default=64)
  parser.add_argument('--learning_rate', type=float, default=5e-3)
  parser.add_argument('--threshold', type=float, default=0.01,
                      help='Alive threshold on |gamma| (cost_target.py).')
  parser.add_argument('--tolerance', type=float, default=0.03)
  parser.add_argument('--hold', type=int, default=2)
  parser.add_argument('--max_epochs', type=int, default=20)
  parser.add_argument('--retrain_epochs', type=int, default=10)
  parser.add_argument('--smoke', action='store_true',
                      help='A tiny budget: %s.' % ', '.join(
                          '%s=%s' % item for item in sorted(SMOKE.items())))
  parser.add_argument('--stop_after', default='table', choices=STOPS,
                      help='Stop after this stage of every network: '
                      '"calibrate" and "measure" are the timed stages (run '
                      'them on a quiet machine), "structures" and "table" '
                      'train (load does not matter); a later run resumes.')
  parser.add_argument('--stage', default='all', choices=STAGES,
                      help='Internal: the child processes that time.')
  args = parser.parse_args(argv)
  if args.smoke:
    for name, value in SMOKE.items():
      setattr(args, name, value)
  unknown = sorted(set(args.networks.split(',')) - set(NETWORKS))
  if unknown:
    parser.error('unknown networks %s; expected some of %s' % (
        ', '.join(unknown), ', '.join(NETWORKS)))
  return args


def seeds_of(args):
  return [int(s) for s in str(args.seeds).split(',')]


def label(method: str, seed: int) -> str:
  """The name of a cell's structure in the measurement."""
  return '%s/%d' % (method, seed)


def network_dir(args, network):
  return os.path.join(args.output_dir, network)


def profile_path(args, network):
  return os.path.join(network_dir(args, network), 'profile.json')


def measurement_path(args, network):
  return os.path.join(network_dir(args, network), 'measurement.json')


def cell_path(args, network, method, seed):
  return os.path.join(network_dir(args, network), 'cells',
                      '%s_%d.json' % (method, seed))


def read_json(path):
  """The JSON at `path`, or None when there is no file."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_json(value, path):
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_file.write_json_atomically(value, path)


def check_settings(args):
  """Keeps `<output_dir>/settings.json`: the settings of its cells.

  Written by the first run; a later run with other values of `SETTINGS`
  would mix cells of two budgets in one table.

  Raises:
    InvalidArgumentError: naming the flags that differ from the stored
      ones.
  """
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  path = os.path.join(args.output_dir, 'settings.json')
  current = {name: getattr(args, name) for name in SETTINGS}
  saved = read_json(path)
  if saved is None:
    write_json(current, path)
    return
  differing = [name for name in SETTINGS if saved.get(name) != current[name]]
  if differing:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `output_dir`: %s holds cells of other '
        'settings (%s). Use another --output_dir, or delete it to start '
        'again.' % (path, ', '.join(
            '--%s=%r there, %r now' % (name, saved.get(name), current[name])
            for name in differing)))


def input_shape_of(network):
  """The input shape without batch (`networks.build_model`'s default)."""
  return (32, 32, 3) if network == 'mobilenet_v2' else (28, 28, 1)


# ---------------------------------------------- timing (child processes).


def run_child(stage, network, argv):
  """Runs `stage` of `network` in a new process (its threads pinned)."""
  command = [sys.executable, os.path.abspath(__file__)] + list(argv) + [
      '--stage=%s' % stage, '--networks=%s' % network]
  print('%s: %s in a child process' % (network, stage), flush=True)
  subprocess.run(command, check=True)


def samples_path(args, network):
  return os.path.join(network_dir(args, network), 'samples.json')


def calibrate(args, network):
  """Calibrates the network's profile on this machine and saves it, and
  the measurements it was fitted on (`samples.json`, to fit again without
  timing: `latency_prediction.samples_from_json`)."""
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from morph_net.latency import calibration  # pylint: disable=g-import-not-at-top
  from morph_net.latency import fit  # pylint: disable=g-import-not-at-top
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  model = networks.build_model(network)
  start = time.time()
  settings = calibration.CalibrationSettings(
      batch_size=args.batch_size, repeats=args.calibration_repeats,
      warmup=args.warmup, model_structures=args.model_structures,
      statistic=args.statistic, clock=args.clock, budget=args.budget,
      probe=not args.no_probe, unstable_spread=args.unstable_spread,
      max_attempts=args.max_attempts, allocator=args.allocator,
      half_smallest_fraction=True, verbose=1)
  samples, metadata = calibration.measure(model, settings=settings)
  write_json(latency_prediction.samples_to_json(samples),
             samples_path(args, network))
  profile = fit.fit_profile(samples, settings.batch_size,
                            timing.describe_device(), metadata,
                            multiples=settings.multiples,
                            misalignment=settings.misalignment)
  profile.metadata['seconds'] = time.time() - start
  calibration.save_profile(profile, profile_path(args, network))
  print(calibration.summary(profile), flush=True)


def measured_structures(args, network):
  """{label: structure} of every cell with a structure, in cell order."""
  structures = {}
  for seed in seeds_of(args):
    for method in METHODS:
      cell = read_json(cell_path(args, network, method, seed))
      if cell and 'structure' in cell:
        structures[label(method, seed)] = cell['structure']
  return structures


def measure(args, network):
  """Times the original and every structure rebuilt, in one run."""
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import channel_model  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
  structures = measured_structures(args, network)
  original = networks.build_model(network)
  channels = channel_model.analyze(original)
  labels = ['original'] + list(structures)
  models = [original] + [rebuild.rebuild(original, s, channels=channels)
                         for s in structures.values()]
  shape = input_shape_of(network)
  ops = [latency_prediction.model_ops(m, args.batch_size, shape)[1]
         for m in models]
  settings = latency_prediction.measurement_settings(args)
  load = os.getloadavg()
  values, report = latency_prediction.measure(
      models, args.batch_size, shape, settings, labels, ops)
  write_json({
      'structures': structures, 'labels': labels,
      'measured_ms': dict(zip(labels, [v / 1e6 for v in values])),
      'uncorrected_ms': dict(zip(labels, [v / 1e6 for v in
                                          report.values()])),
      'iqr_ms': {m.label: (m.q3_ns - m.q1_ns) / 1e6
                 for m in report.measurements},
      'spread': {m.label: m.spread for m in report.measurements},
      # Per-round times, and the original's in each one's group (timed in
      # the same rounds): the significance of "slower" (`slower_cases`).
      'times_ms': {m.label: [t / 1e6 for t in m.times_ns]
                   for m in report.measurements},
      'anchor_times_ms': {m.label: [t / 1e6 for t in
                                    report.shared[m.group][0].times_ns]
                          for m in report.measurements},
      'flagged': report.flagged(),
      'anchor_ms': [group[0].value_ns / 1e6 for group in report.shared],
      'groups': len(report.groups), 'budget': report.budget,
      'budget_source': report.budget_source, 'batch_size': args.batch_size,
      'cpu': timing.cpu_model(), 'device': timing.describe_device(),
      'load_average': [list(load), list(os.getloadavg())],
      'environment': report.environment}, measurement_path(args, network))


def child_main(args):
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  timing.pin_threads(args.threads, args.inter_op_threads)
  network = args.networks
  if args.stage == 'calibrate':
    calibrate(args, network)
  else:
    measure(args, network)


# ------------------------------------------------- structures and training.


class Network(object):
  """One network's data, FLOP and latency costers, targets and cells.

  Args:
    args: the parsed flags.
    network: one of `NETWORKS`.
  """

  def __init__(self, args, network):
    from benchmarks import results_methods  # pylint: disable=g-import-not-at-top
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
    from morph_net.network_regularizers import latency_profile  # pylint: disable=g-import-not-at-top
    from morph_net.network_regularizers import resource_function  # pylint: disable=g-import-not-at-top
    self.args, self.name = args, network
    budget = results_methods.Budget(
        train_examples=args.train_examples,
        test_examples=args.test_examples,
        batch_size=args.train_batch_size, train_epochs=args.retrain_epochs,
        learning_rate=args.learning_rate, gamma_threshold=args.threshold)
    self.bench = results_methods.Bench(
        network, results_methods.load_data('fashion_mnist', network, budget),
        budget)
    self.profile = profile_path(args, network)
    self.latency = morph_keras.StructureCost(
        self.bench.coster.traced, resource_function.latency_function_factory(
            self.profile, args.batch_size))
    self.original = self.latency.channels.original_structure()
    self.original_ns = float(self.latency.cost({}))
    self.target_ns = args.target * self.original_ns
    # The FLOP target: the FLOPs of the one multiplier the profile puts at
    # the latency target.
    uniform, _, _ = expansion.expand_to_cost(self.latency, self.original,
                                             self.target_ns)
    self.flop_target = self.bench.flops(uniform)
    self.info = {
        'network': network, 'original_predicted_ns': self.original_ns,
        'original_flops': self.bench.original_flops,
        'target': args.target, 'target_ns': self.target_ns,
        'flop_target': self.flop_target, 'batch_size': args.batch_size,
        'preferred_multiple': latency_profile.preferred_multiple_of(
            self.latency)}

  def _shrink(self, method, seed, regularizer_class, target, **kwargs):
    """Trains `method`'s regularizer to `target`; (record, regularizer)."""
    from benchmarks import cost_target  # pylint: disable=g-import-not-at-top
    from benchmarks import results_methods  # pylint: disable=g-import-not-at-top
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    a = self.args
    model = self.bench.build(seed)
    regularizer = morph_keras.ModelRegularizer(
        model, regularizer_class, gamma_threshold=a.threshold, **kwargs)
    data = self.bench.data
    trained = cost_target.train_to_target(
        model, regularizer, target, data.x_train, data.y_train,
        a.train_batch_size, a.learning_rate, a.max_epochs, a.tolerance,
        a.hold, key='%s %s %d' % (self.name, method, seed),
        jit_compile=results_methods.JIT_COMPILE)
    trained.update({'target_cost': target,
                    'initial_cost': float(regularizer.initial_cost),
                    'alive': regularizer.alive_counts()})
    return trained, regularizer

  def _matched(self, structure, latency_cell):
    """`structure` scaled to the latency cell's predicted latency."""
    from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
    matched, multiplier, predicted = expansion.expand_to_cost(
        self.latency, structure, latency_cell['predicted_ns'])
    return {'structure': matched, 'multiplier': multiplier,
            'predicted_ns': float(predicted),
            'matched_to_ns': latency_cell['predicted_ns']}

  def structure_cell(self, method, seed, latency_cell=None):
    """The cell's record with its structure (no accuracy yet)."""
    record = {'network': self.name, 'method': method, 'seed': seed}
    if method == 'latency':
      shrink, regularizer = self._shrink(
          method, seed, 'GammaLatencyRegularizer', self.target_ns,
          hardware=self.profile, batch_size=self.args.batch_size)
      from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
      aligned = regularizer.aligned_counts()
      structure, _ = expansion.aligned_structure(regularizer, self.target_ns)
      record.update({'shrink': shrink, 'structure': structure,
                     'predicted_ns': float(self.latency.cost(structure)),
                     'aligned': aligned,
                     'aligned_predicted_ns': float(self.latency.cost(aligned)),
                     'target_ns': self.target_ns})
    elif method == 'flops':
      shrink, regularizer = self._shrink(method, seed,
                                         'GammaFlopsRegularizer',
                                         self.flop_target)
      record.update({'shrink': shrink,
                     'shrunk': regularizer.alive_counts()})
      record.update(self._matched(record['shrunk'], latency_cell))
    else:
      record.update(self._matched(self.original, latency_cell))
    record['flops'] = self.bench.flops(record['structure'])
    return record

  def rematched(self, record, latency_cell):
    """A flops or uniform cell matched again to a latency cell that
    changed (made again); its accuracy is dropped."""
    base = record['shrunk'] if record['method'] == 'flops' else self.original
    record = {k: v for k, v in record.items()
              if k not in ('accuracy', 'retrain_seconds')}
    record.update(self._matched(base, latency_cell))
    record['flops'] = self.bench.flops(record['structure'])
    return record

  def retrain(self, record):
    """The record with the structure's accuracy trained from scratch."""
    trained = self.bench.train_structure(record['seed'], record['structure'],
                                         self.args.retrain_epochs)
    return dict(record, accuracy=trained['accuracy'],
                retrain_seconds=trained['train_seconds'])


def run_network(args, network, argv):
  """Every stage of one network; returns (info, records, measurement)."""
  if not os.path.exists(profile_path(args, network)):
    run_child('calibrate', network, argv)
  if args.stop_after == 'calibrate':
    return None
  net = Network(args, network)
  write_json(net.info, os.path.join(network_dir(args, network),
                                    'network.json'))
  seeds = seeds_of(args)
  cells = {}
  for seed in seeds:
    for method in METHODS:
      path = cell_path(args, network, method, seed)
      record = read_json(path)
      reference = cells.get(('latency', seed))
      if record is None:
        start = time.time()
        record = net.structure_cell(method, seed, reference)
        write_json(record, path)
        print('%s %s seed %d: structure in %.0f s, predicted %.3f ms' % (
            network, method, seed, time.time() - start,
            record['predicted_ns'] / 1e6), flush=True)
      elif reference and record['matched_to_ns'] != reference[
          'predicted_ns']:
        record = net.rematched(record, reference)
        write_json(record, path)
        print('%s %s seed %d: matched again to the new latency structure' %
              (network, method, seed), flush=True)
      cells[(method, seed)] = record
  if args.stop_after == 'structures':
    return None
  measured = read_json(measurement_path(args, network))
  if measured is None or measured['structures'] != measured_structures(
      args, network):
    run_child('measure', network, argv)
    measured = read_json(measurement_path(args, network))
  if args.stop_after == 'measure':
    return None
  records = []
  for seed in seeds:
    for method in METHODS:
      record = cells[(method, seed)]
      if 'accuracy' not in record:
        record = net.retrain(record)
        write_json(record, cell_path(args, network, method, seed))
        print('%s %s seed %d: accuracy %.4f' % (
            network, method, seed, record['accuracy']), flush=True)
      records.append(record)
  return net.info, records, measured


# ------------------------------------------------------------- the table.


def equal_latency_ratio(record, measured):
  """Measured latency of the record's structure over the latency
  structure's of the same seed (None if either was not measured)."""
  ms = measured['measured_ms']
  own = ms.get(label(record['method'], record['seed']))
  reference = ms.get(label('latency', record['seed']))
  return own / reference if own and reference else None


def accuracy_summary(records):
  """Per network, each method's accuracy and the paired differences.

  Args:
    records: cells with 'network', 'method', 'seed' and 'accuracy'
      (a fraction).

  Returns:
    (methods, differences): rows of `stats.aggregate` in points
    ({'network', 'method', 'seeds', 'value'}), and per network and
    `DIFFERENCES` pair {'network', 'method', 'baseline', 'seeds',
    'difference'} (`stats.summary` of the paired differences).
  """
  from examples.experiment import stats  # pylint: disable=g-import-not-at-top
  by_baseline = {}
  for baseline in sorted({b for _, b in DIFFERENCES}):
    for row in stats.aggregate(records, ['network'], 'accuracy',
                               baseline=baseline, scale=100.0):
      by_baseline[(row['network'], row['method'], baseline)] = row
  methods = [row for (_, _, baseline), row in sorted(by_baseline.items())
             if baseline == DIFFERENCES[0][1]]
  networks = sorted({row['network'] for row in methods})
  differences = []
  for network in networks:
    for method, baseline in DIFFERENCES:
      row = by_baseline.get((network, method, baseline))
      if row and row['difference']:
        differences.append({
            'network': network, 'method': method, 'baseline': baseline,
            'seeds': row['difference']['seeds'],
            'difference': row['difference']})
  order = {m: i for i, m in enumerate(METHODS)}
  methods.sort(key=lambda r: (r['network'], order.get(r['method'], 99)))
  return methods, differences


def _number(value, form='%.2f'):
  return '-' if value is None else form % value


def _interval(summary):
  if summary['ci_low'] is None:
    return '-'
  return '[%.2f, %.2f]' % (summary['ci_low'], summary['ci_high'])


def surprises(records, measured, original_flops, original_predicted_ns):
  """Labels of rebuilt structures with fewer FLOPs than the original,
  measured slower than it, that the profile did not predict slower
  (`latency_prediction.surprises`)."""
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  ms = measured['measured_ms']
  timed = [r for r in records
           if label(r['method'], r['seed']) in ms]
  flops = [original_flops] + [r['flops'] for r in timed]
  times = [ms['original']] + [ms[label(r['method'], r['seed'])]
                              for r in timed]
  predicted = [original_predicted_ns] + [r['predicted_ns'] for r in timed]
  return [label(timed[i - 1]['method'], timed[i - 1]['seed'])
          for i in latency_prediction.surprises(flops, times, predicted)]


# The level of the one-sided test of "slower than the original".
SLOWER_ALPHA = 0.05


def slower_cases(records, measured, original_flops, original_predicted_ns,
                 alpha=SLOWER_ALPHA):
  """Rebuilt structures with fewer FLOPs than the original that the profile
  did not predict slower, measured slower than it: by their medians, and
  by a test.

  Args:
    records: the cells.
    measured: the measurement (`measure`); 'times_ms' and
      'anchor_times_ms' are the per-round times of each structure and of
      the original in its group.
    original_flops: the original's FLOPs.
    original_predicted_ns: the original's predicted latency.
    alpha: the test's level.

  Returns:
    (strict, significant): `surprises` (labels whose drift-corrected median
    is above the original's), and [(label, p)] of those whose per-round
    times are greater than the original's in the same group by a
    one-sided Mann-Whitney U test at `alpha` (`latency_prediction.
    slower_p_value`), or None when the measurement has no per-round times.
  """
  from benchmarks import latency_prediction  # pylint: disable=g-import-not-at-top
  strict = surprises(records, measured, original_flops,
                     original_predicted_ns)
  times, anchors = measured.get('times_ms'), measured.get('anchor_times_ms')
  if not times or not anchors:
    return strict, None
  significant = []
  for r in records:
    name = label(r['method'], r['seed'])
    if (name not in times or not r['flops'] < original_flops or
        r['predicted_ns'] > original_predicted_ns):
      continue
    p = latency_prediction.slower_p_value(times[name], anchors[name])
    if p < alpha:
      significant.append((name, p))
  return strict, significant


def network_table(info, records, measured):
  """The markdown lines of one network: its cells and speed checks."""
  ms = measured['measured_ms']
  original = ms['original']
  lines = [
      '### %s' % info['network'], '',
      'Original: predicted %.3f ms, measured %.3f ms (batch %d; %s; '
      'preferred multiple %d). Latency target %.2f x predicted = %.3f ms; '
      'FLOP target %.4g MFLOPs of %.4g.' % (
          info['original_predicted_ns'] / 1e6, original, info['batch_size'],
          measured.get('cpu', '?'), info['preferred_multiple'],
          info['target'], info['target_ns'] / 1e6, info['flop_target'] / 1e6,
          info['original_flops'] / 1e6), '',
      '| method | seed | shrink epochs | reached | MFLOPs | predicted ms | '
      'measured ms | IQR / median | measured / target | measured / '
      "latency structure's | speed-up (measured) | accuracy (%) |",
      '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in records:
    name = label(r['method'], r['seed'])
    shrink = r.get('shrink')
    own = ms.get(name)
    ratio = equal_latency_ratio(r, measured)
    lines.append('| %s | %d | %s | %s | %.3f | %.3f | %s | %s | %s | %s | '
                 '%s | %s |' % (
                     r['method'], r['seed'],
                     shrink['epochs'] if shrink else '-',
                     ('yes' if shrink['reached'] else 'no') if shrink
                     else '-', r['flops'] / 1e6, r['predicted_ns'] / 1e6,
                     _number(own, '%.3f'),
                     _number(100 * measured['spread'][name]
                             if name in measured.get('spread', {}) else None,
                             '%.1f%%'),
                     _number(own / (info['target_ns'] / 1e6)
                             if own and r['method'] == 'latency' else None,
                             '%.3f'),
                     _number(ratio, '%.3f'),
                     _number(original / own if own else None, '%.2fx'),
                     _number(100 * r['accuracy'] if 'accuracy' in r
                             else None)))
  lines.append('')
  targeted = [ms[label('latency', r['seed'])] / (info['target_ns'] / 1e6)
              for r in records if r['method'] == 'latency' and
              label('latency', r['seed']) in ms]
  if targeted:
    lines.append('Latency-targeted structures measured at %.3f-%.3f of the '
                 'target; %d of %d within 10%%.' % (
                     min(targeted), max(targeted),
                     sum(abs(t - 1) <= 0.1 for t in targeted),
                     len(targeted)))
  for method in METHODS[1:]:
    ratios = [equal_latency_ratio(r, measured) for r in records
              if r['method'] == method]
    ratios = [x for x in ratios if x is not None]
    if ratios:
      lines.append('Equal latency: %s structures measured at %.3f-%.3f of '
                   "the latency structure's of the same seed." % (
                       method, min(ratios), max(ratios)))
  slower, significant = slower_cases(records, measured,
                                     info['original_flops'],
                                     info['original_predicted_ns'])
  lines.append('Rebuilt with fewer FLOPs but measured slower than the '
               'original and not predicted: %d%s (median above the '
               "original's)" % (
                   len(slower), (' (%s)' % ', '.join(
                       '%s %+.1f%%' % (name, 100.0 * (
                           ms[name] / original - 1.0)) for name in slower))
                   if slower else ''))
  if significant is None:
    lines.append('Slower by a test: not available (the measurement has no '
                 'per-round times).')
  else:
    lines.append(
        'Of those with fewer FLOPs and not predicted slower, slower by a '
        'one-sided Mann-Whitney U test of the '
        "per-round times against the original's in the same group "
        '(p < %.2f): %d%s' % (SLOWER_ALPHA, len(significant), (' (%s)' % (
            ', '.join('%s p=%.3g' % case for case in significant)))
                                if significant else ''))
  if measured.get('flagged'):
    lines.append('Flagged unstable: %s' % ', '.join(measured['flagged']))
  return lines


def summary_table(records):
  """Markdown lines: accuracy per method, then the paired differences."""
  methods, differences = accuracy_summary(records)
  lines = ['| network | method | seeds | accuracy mean (%) | std | 95% '
           'interval |', '|---|---|---|---|---|---|']
  for row in methods:
    v = row['value']
    lines.append('| %s | %s | %d | %s | %s | %s |' % (
        row['network'], row['method'], v['n'], _number(v['mean']),
        _number(v['std']), _interval(v)))
  lines += ['', '| network | paired difference (points) | seeds | mean | '
            'std | 95% interval |', '|---|---|---|---|---|---|']
  for row in differences:
    d = row['difference']
    lines.append('| %s | %s - %s | %d | %s | %s | %s |' % (
        row['network'], row['method'], row['baseline'], d['n'],
        _number(d['mean'], '%+.2f'), _number(d['std']), _interval(d)))
  return lines


def table(results):
  """The whole markdown report of [(info, records, measurement)]."""
  lines = ['## Latency-targeted shrink: measured speed and accuracy', '']
  for info, records, measured in results:
    lines += network_table(info, records, measured) + ['']
  lines += ['### Accuracy at equal measured latency', '']
  lines += summary_table([r for _, records, _ in results for r in records])
  return '\n'.join(lines)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.stage != 'all':
    child_main(args)
    return
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  check_settings(args)
  start = time.time()
  results = [run_network(args, network, argv)
             for network in args.networks.split(',')]
  if args.stop_after != 'table':
    print('Stopped after %s (%.0f s); run again without --stop_after to '
          'go on.' % (args.stop_after, time.time() - start))
    return
  text = table(results)
  print(text)
  atomic_file.write_text_atomically(text + '\n', os.path.join(
      args.output_dir, 'table.md'))
  print('%.0f s in all' % (time.time() - start))


if __name__ == '__main__':
  main()
