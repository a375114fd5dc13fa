r"""MorphNet against uniform width and unweighted L1, at equal FLOPs, by seed.

  python3 benchmarks/results_table.py --output_dir=/tmp/results_table
  python3 benchmarks/results_table.py --output_dir=/tmp/results_table \
      --only=network=vgg,stage=prune+scratch --seeds=0,1

Cells are (network, method, target, seed, stage):

- networks (`networks.py`): `vgg` (widths doubling down the network),
  `resnet` (the examples' small ResNet), `mobilenet_v2` (keras.applications,
  alpha 0.35, 32x32x3);
- methods: `gamma` (MorphNet Gamma FLOPs with `CostTargetCallback`), `figs`
  (MorphNet LogisticSigmoid FLOPs, the same), `uniform` (one width
  multiplier), `l1` (Network Slimming: unweighted L1 on batch-norm gammas,
  a global threshold);
- targets: fractions of the original FLOPs (0.5, 0.25);
- stages (`results_methods.py`): prune, scratch, finetune, expand1,
  reprune, expand2, and uniform's `original` (target 1).

Every structure is within `--tolerance` (1%) of its FLOPs target, checked
when the cell is made and again over the table. Each cell is one JSON file
under `<output_dir>/cells/` (trained weights beside it where a later stage
needs them), written atomically and skipped when present, so the table
fills over several invocations. `--only=field=value[+value],...` runs the
cells that match (fields network, method, target, seed, stage); the cells a
matching cell needs run too. Written each time, from every cell on disk:
`table.md` (accuracy mean, std and 95% t interval per cell, the paired
difference to uniform by seed; the FLOPs check; what each cell cost),
`summary.md` (a table per network, a column per method), `table.json`,
`plot.csv` and `plot.png` (accuracy with 95% intervals).
"""

import collections
import dataclasses
import json
import os
import sys
import time

if __package__ in (None, ''):  # Run as a script: the repository's packages.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging

from benchmarks import results_methods as methods_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import results_report  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS

Cell = collections.namedtuple('Cell', 'network method target seed stage')
_FIELDS = Cell._fields


def define_flags():
  """Defines the command line flags (only when run as a program)."""
  budget = methods_lib.Budget()
  flags.DEFINE_string('output_dir', '/tmp/morph_net_results_table',
                      'Where cells are cached and the table is written.')
  flags.DEFINE_enum('dataset', 'fashion_mnist', ['fashion_mnist', 'cifar10'],
                    'Fashion-MNIST (offline) or CIFAR-10 (tensorflow-'
                    'datasets, downloads once).')
  flags.DEFINE_list('networks', ['vgg', 'resnet', 'mobilenet_v2'],
                    'Networks.')
  flags.DEFINE_list('methods', list(methods_lib.METHODS), 'Methods.')
  flags.DEFINE_list('targets', ['0.5', '0.25'], 'FLOPs fractions.')
  flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Seeds.')
  flags.DEFINE_list('stages', list(methods_lib.STAGES[1:]),
                    'Stages (uniform\'s original runs when one needs it).')
  flags.DEFINE_list('only', [], 'Filters field=value[+value]: run only the '
                    'matching cells (and what they need).')
  for field in methods_lib.Budget.__dataclass_fields__.values():
    define = {int: flags.DEFINE_integer,
              float: flags.DEFINE_float}[type(getattr(budget, field.name))]
    define(field.name, getattr(budget, field.name),
           'Budget: %s (results_methods.Budget).' % field.name)


# ------------------------------------------------------------------ cells.


def cell_key(cell: Cell) -> str:
  return '%s_%s_%g_%d_%s' % cell


def parse_only(filters):
  """{field: set of strings} from ['network=vgg+resnet', 'seed=0'].

  Raises:
    InvalidArgumentError: for a filter that is not field=value or names an
      unknown field.
  """
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  parsed = {}
  for item in filters:
    field, _, values = item.partition('=')
    if field not in _FIELDS or not values:
      raise errors.InvalidArgumentError(
          'Invalid value for flag `--only`. Expected field=value[+value] '
          'with a field of %s. Received: %r' % (', '.join(_FIELDS), item))
    parsed[field] = set(values.split('+'))
    number = {'target': float, 'seed': int}.get(field)
    for value in parsed[field] if number else ():
      try:
        number(value)
      except ValueError:
        raise errors.InvalidArgumentError(  # pylint: disable=raise-missing-from
            'Invalid value for flag `--only`: %s takes %s values. Received: '
            '%r' % (field, 'number' if number is float else 'integer',
                    item))
  return parsed


def matches(cell: Cell, only) -> bool:
  for field, values in only.items():
    value = getattr(cell, field)
    if isinstance(value, float):
      if not any(abs(float(v) - value) < 1e-9 for v in values):
        return False
    elif str(value) not in values:
      return False
  return True


def check_choices(flag: str, values, allowed) -> None:
  """Raises unless every value is one of `allowed`.

  Raises:
    InvalidArgumentError: naming the flag, the allowed values and the
      value received.
  """
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  unknown = [v for v in values if v not in allowed]
  if unknown:
    raise errors.InvalidArgumentError(
        'Invalid value for flag `--%s`. Expected values of %s. Received: %s'
        % (flag, ', '.join(allowed), ','.join(unknown)))


def requested_cells(networks, methods, targets, seeds, stages):
  """The cells of the grid, seeds outermost (a partial table is balanced)."""
  cells = []
  for seed in seeds:
    for network in networks:
      for target in targets:
        for method in methods:
          for stage in stages:
            if method == 'uniform' and stage == 'reprune':
              continue
            cells.append(Cell(network, method, target, seed, stage))
  return cells


_NEEDS = {'scratch': 'prune', 'finetune': 'prune', 'expand1': 'prune',
          'reprune': 'expand1', 'expand2': 'reprune'}


def dependencies(cell: Cell):
  """The cells `cell` reads (uniform's expanded network is `original`)."""
  if cell.method == 'uniform':
    original = cell._replace(target=1.0, stage='original')
    prune = cell._replace(stage='prune')
    return {'original': [], 'prune': [], 'scratch': [prune],
            'finetune': [original, prune], 'expand1': [original],
            'expand2': [original]}[cell.stage]
  needed = _NEEDS.get(cell.stage)
  return [cell._replace(stage=needed)] if needed else []


class Store(object):
  """The cells on disk: `<dir>/<key>.json` and `<key>.weights.h5`."""

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)

  def path(self, cell: Cell, suffix: str = '.json') -> str:
    return os.path.join(self.directory, cell_key(cell) + suffix)

  def get(self, cell: Cell):
    path = self.path(cell)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def put(self, cell: Cell, record) -> None:
    from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
    atomic_file.write_json_atomically(record, self.path(cell))

  def all(self):
    records = []
    for name in sorted(os.listdir(self.directory)):
      if name.endswith('.json') and not name.startswith('.'):
        with open(os.path.join(self.directory, name)) as f:
          records.append(json.load(f))
    return records


def run_stage(bench, store: Store, cell: Cell):
  """Runs one cell's stage on `bench`; returns its record (not stored)."""
  network, method, target, seed, stage = cell
  weights = store.path(cell, '.weights.h5')
  read = lambda s, t=target: store.get(cell._replace(stage=s, target=t))
  original = lambda: store.path(cell._replace(stage='original', target=1.0),
                                '.weights.h5')
  if stage == 'original':
    return bench.original(seed, weights)
  if method == 'uniform':
    if stage == 'prune':
      return bench.uniform(target)
    if stage == 'scratch':
      return bench.train_structure(seed, read('prune')['structure'])
    if stage == 'finetune':
      return bench.finetune(method, seed, read('prune'), original())
    base = read('original', 1.0)  # Expanded to the original cost: itself.
    return {'flops': base['flops'], 'accuracy': base['accuracy'],
            'train_seconds': 0.0, 'multiplier': 1.0}
  if stage == 'prune':
    return bench.prune(method, target, seed, weights)
  if stage == 'scratch':
    return bench.train_structure(seed, read('prune')['structure'])
  if stage == 'finetune':
    return bench.finetune(method, seed, read('prune'), store.path(
        cell._replace(stage='prune'), '.weights.h5'))
  if stage == 'expand1':
    return bench.expand(seed, read('prune')['structure'])
  if stage == 'reprune':
    return bench.prune(method, target, seed, weights,
                       base=read('expand1')['structure'])
  return bench.expand(seed, read('reprune')['structure'])


def target_flops(record) -> float:
  """The FLOPs a cell's structure must have: target or original."""
  expanded = record['stage'] in ('original', 'expand1', 'expand2')
  return record['original_flops'] * (1.0 if expanded else record['target'])


def make(bench, store: Store, cell: Cell, tolerance: float, made=None,
         dataset: str = 'fashion_mnist'):
  """Makes `cell` (and the cells it needs) unless stored; returns it.

  Args:
    bench: the cell network's `results_methods.Bench`.
    store: the `Store`.
    cell: the cell.
    tolerance: the largest relative FLOPs distance to the cell's target.
    made: a list the cells made are appended to.
    dataset: recorded in the cell.

  Returns:
    The cell's record.

  Raises:
    UnequalCostError: if the cell's FLOPs miss its target (not stored).
  """
  record = store.get(cell)
  if record is not None:
    return record
  for needed in dependencies(cell):
    make(bench, store, needed, tolerance, made, dataset)
  start = time.time()
  record = run_stage(bench, store, cell)
  record.update(cell._asdict())
  record.update(seconds=time.time() - start,
                original_flops=bench.original_flops, dataset=dataset,
                budget=dataclasses.asdict(bench.budget))
  record['flops_distance'] = methods_lib.check_equal_cost(
      cell_key(cell), record['flops'], target_flops(record), tolerance)
  store.put(cell, record)
  if made is not None:
    made.append(cell)
  logging.info('%s: %.0f s, accuracy %s', cell_key(cell), record['seconds'],
               record.get('accuracy'))
  print('made %s in %.0f s' % (cell_key(cell), record['seconds']),
        flush=True)
  return record


def fill(cells, store: Store, bench_of, tolerance: float, dataset: str):
  """Makes the cells not stored yet; a cell off its FLOPs target is skipped.

  Args:
    cells: the cells wanted.
    store: the `Store`.
    bench_of: network name -> its `results_methods.Bench` (made when first
      needed, so a fully stored table loads no data).
    tolerance: the largest relative FLOPs distance to a target.
    dataset: recorded in each cell.

  Returns:
    (cells made, number already stored, messages of the cells that missed
    their FLOPs target: not stored, the others still run).
  """
  made, skipped, missed = [], 0, []
  for cell in cells:
    if store.get(cell) is not None:
      skipped += 1
      continue
    try:
      make(bench_of(cell.network), store, cell, tolerance, made, dataset)
    except methods_lib.UnequalCostError as e:
      logging.error('%s', e)
      missed.append(str(e))
  return made, skipped, missed


def budget_from_flags() -> methods_lib.Budget:
  return methods_lib.Budget(**{
      name: getattr(FLAGS, name)
      for name in methods_lib.Budget.__dataclass_fields__})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Unexpected arguments: %s' % argv[1:])
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  check_choices('networks', FLAGS.networks, networks.ARCHITECTURES)
  check_choices('methods', FLAGS.methods, methods_lib.METHODS)
  check_choices('stages', FLAGS.stages, methods_lib.STAGES[1:])
  only = parse_only(FLAGS.only)
  budget = budget_from_flags()
  store = Store(os.path.join(FLAGS.output_dir, FLAGS.dataset, 'cells'))
  cells = [c for c in requested_cells(
      FLAGS.networks, FLAGS.methods, [float(t) for t in FLAGS.targets],
      [int(s) for s in FLAGS.seeds], FLAGS.stages) if matches(c, only)]
  benches = {}

  def bench_of(network):
    if network not in benches:
      data = methods_lib.load_data(FLAGS.dataset, network, budget)
      benches[network] = methods_lib.Bench(network, data, budget)
    return benches[network]

  made, skipped, missed = fill(cells, store, bench_of, budget.tolerance,
                               FLAGS.dataset)
  print('%d cells made, %d already stored.' % (len(made), skipped))
  other = [r for r in store.all()
           if r.get('budget') != dataclasses.asdict(budget)]
  if other:
    print('Warning: %d stored cells were made with another budget (their '
          '"budget" field); the table mixes them.' % len(other))
  text = results_report.write(store.all(), os.path.dirname(store.directory),
                              budget.tolerance)
  print(text)
  if missed:
    sys.exit('%d cells missed their FLOPs target and were not stored:\n%s'
             % (len(missed), '\n'.join(missed)))


if __name__ == '__main__':
  define_flags()
  app.run(main)
