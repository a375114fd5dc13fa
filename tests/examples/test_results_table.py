"""benchmarks/results_table.py: cells, cache, equal FLOPs, outputs, a smoke run."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from benchmarks import results_methods
from benchmarks import results_report
from benchmarks import results_table
from examples import datasets
from morph_net import errors

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_BENCHMARK = os.path.join(_ROOT, 'benchmarks', 'results_table.py')
Cell = results_table.Cell


# --------------------------------------------------- FiGS fine-tuning.


def test_open_gates_makes_training_passes_the_inference_network():
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = networks.build_model('vgg', (28, 28, 1), True, 10)
  gates = [layer for layer in model.layers if layer.name.endswith('_gate')]
  for gate in gates:  # Kept gates as a FiGS shrink leaves them: p ~ 0.55.
    gate.log_odds.assign(np.full(gate.log_odds.shape, 0.2, np.float32))
  x = np.random.RandomState(0).rand(8, 28, 28, 1).astype(np.float32)
  inference = keras.ops.convert_to_numpy(model(x, training=False))
  sampled = keras.ops.convert_to_numpy(model(x, training=True))
  assert not np.allclose(sampled, inference, atol=1e-3)
  assert results_methods._open_gates(model) == len(gates) == 7  # pylint: disable=protected-access
  # Batch norms in training mode use the batch's statistics: compare the
  # gates' outputs, the only random part, through the masks they apply.
  for gate in gates:
    mask = keras.ops.convert_to_numpy(gate.get_mask(training=True))
    assert mask.tolist() == [1.0] * gate.log_odds.shape[0]
    assert keras.ops.convert_to_numpy(
        gate.get_mask(training=False)).tolist() == mask.tolist()


def test_open_gates_opens_the_gates_of_a_nested_base_model():
  # MobileNetV2 is nested under a head: `model.layers` lists none of its
  # 52 gates (one after each of its 52 batch norms).
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  model = networks.build_model('mobilenet_v2', (32, 32, 3), True, 10)
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  assert not any(isinstance(layer, activation_gating.LogisticSigmoidGating)
                 for layer in model.layers)
  from morph_net.surgery import nesting  # pylint: disable=g-import-not-at-top
  assert results_methods._open_gates(model) == 52  # pylint: disable=protected-access
  gates = [layer for layer in nesting.leaf_layers(model)
           if isinstance(layer, activation_gating.LogisticSigmoidGating)]
  assert len(gates) == 52
  for gate in gates:
    mask = keras.ops.convert_to_numpy(gate.get_mask(training=True))
    assert mask.tolist() == [1.0] * gate.log_odds.shape[0]


# --------------------------------------------------------- equal FLOPs.


def test_equal_cost_returns_the_distance_within_the_tolerance():
  assert results_methods.check_equal_cost('c', 99.0, 100.0, 0.01) == (
      pytest.approx(-0.01))
  assert results_methods.check_equal_cost('c', 100.5, 100.0, 0.01) == (
      pytest.approx(0.005))


def test_equal_cost_raises_naming_the_cell_beyond_the_tolerance():
  with pytest.raises(results_methods.UnequalCostError) as raised:
    results_methods.check_equal_cost('vgg_gamma_0.5_0_prune', 101.5, 100.0,
                                     0.01)
  assert isinstance(raised.value, errors.Error)
  assert str(raised.value) == (
      "Cell vgg_gamma_0.5_0_prune: FLOPs 101.5 are +1.50% from the target "
      "100, beyond the tolerance of 1%; the methods are compared at equal "
      "FLOPs only. The structure fit could not come closer (see the log for "
      "why); delete the cell's JSON and rerun it, or pass a larger "
      "--tolerance.")


# ---------------------------------------------------- cells and cache.


def test_only_filters_and_their_errors():
  only = results_table.parse_only(['network=vgg+resnet', 'target=0.5'])
  assert only == {'network': {'vgg', 'resnet'}, 'target': {'0.5'}}
  assert results_table.matches(Cell('vgg', 'l1', 0.5, 0, 'prune'), only)
  assert not results_table.matches(Cell('vgg', 'l1', 0.25, 0, 'prune'), only)
  assert not results_table.matches(
      Cell('mobilenet_v2', 'l1', 0.5, 0, 'prune'), only)
  with pytest.raises(errors.InvalidArgumentError) as raised:
    results_table.parse_only(['net=vgg'])
  assert str(raised.value) == (
      'Invalid value for flag `--only`. Expected field=value[+value] with a '
      "field of network, method, target, seed, stage. Received: 'net=vgg'")
  with pytest.raises(errors.InvalidArgumentError) as raised:
    results_table.parse_only(['seed=0+x'])
  assert str(raised.value) == (
      "Invalid value for flag `--only`: seed takes integer values. Received: "
      "'seed=0+x'")


def test_unknown_flag_values_are_named():
  results_table.check_choices('stages', ['prune', 'scratch'], ('prune',
                                                               'scratch'))
  with pytest.raises(errors.InvalidArgumentError) as raised:
    results_table.check_choices('stages', ['prune', 'original', 'x'],
                                ('prune', 'scratch'))
  assert str(raised.value) == (
      'Invalid value for flag `--stages`. Expected values of prune, scratch. '
      'Received: original,x')


def test_grid_and_dependencies():
  cells = results_table.requested_cells(['vgg'], ['gamma', 'uniform'], [0.5],
                                        [0], ['prune', 'reprune', 'expand2'])
  assert [(c.method, c.stage) for c in cells] == [
      ('gamma', 'prune'), ('gamma', 'reprune'), ('gamma', 'expand2'),
      ('uniform', 'prune'), ('uniform', 'expand2')]
  assert results_table.dependencies(Cell('vgg', 'gamma', 0.5, 3,
                                         'expand2')) == [
                                             Cell('vgg', 'gamma', 0.5, 3,
                                                  'reprune')]
  assert results_table.dependencies(Cell('vgg', 'uniform', 0.5, 3,
                                         'finetune')) == [
                                             Cell('vgg', 'uniform', 1.0, 3,
                                                  'original'),
                                             Cell('vgg', 'uniform', 0.5, 3,
                                                  'prune')]
  assert results_table.dependencies(Cell('vgg', 'l1', 0.5, 3, 'prune')) == []


class _FakeBench(object):
  """Counts the stages run; its FLOPs are `flops_fraction` of the target."""

  def __init__(self, flops_fraction=1.0):
    self.original_flops = 1000.0
    self.budget = results_methods.Budget()
    self.calls = []
    self._fraction = flops_fraction

  def uniform(self, target):
    self.calls.append(('uniform', target))
    return {'structure': {'a': 1}, 'flops': 1000.0 * target * self._fraction,
            'train_seconds': 0.0}

  def train_structure(self, seed, structure):
    self.calls.append(('scratch', seed))
    return {'flops': 500.0, 'accuracy': 0.75, 'train_seconds': 1.0}


def test_a_stored_cell_is_skipped_and_a_new_one_stored(tmp_path):
  store = results_table.Store(str(tmp_path))
  bench = _FakeBench()
  scratch = Cell('vgg', 'uniform', 0.5, 2, 'scratch')
  made = []
  record = results_table.make(bench, store, scratch, 0.01, made)
  # The scratch cell needs uniform's structure: both are made, once.
  assert bench.calls == [('uniform', 0.5), ('scratch', 2)]
  assert made == [scratch._replace(stage='prune'), scratch]
  assert record['accuracy'] == 0.75 and record['stage'] == 'scratch'
  assert record['flops_distance'] == 0.0
  assert record['budget'] == dataclasses.asdict(results_methods.Budget())
  assert sorted(os.listdir(tmp_path)) == ['vgg_uniform_0.5_2_prune.json',
                                          'vgg_uniform_0.5_2_scratch.json']
  assert store.get(scratch) == record
  again = results_table.make(bench, store, scratch, 0.01, made)
  assert again == record and len(bench.calls) == 2 and len(made) == 2


def test_a_cell_off_its_flops_target_is_not_stored(tmp_path):
  store = results_table.Store(str(tmp_path))
  with pytest.raises(results_methods.UnequalCostError, match=r'\+2\.00%'):
    results_table.make(_FakeBench(flops_fraction=1.02), store,
                       Cell('vgg', 'uniform', 0.5, 0, 'prune'), 0.01)
  assert os.listdir(tmp_path) == []


def test_fill_goes_on_after_a_cell_off_its_target(tmp_path):
  store = results_table.Store(str(tmp_path))
  cells = [Cell('vgg', 'uniform', 0.5, 0, 'prune'),
           Cell('vgg', 'uniform', 0.25, 0, 'prune')]
  benches = {'vgg': _FakeBench(flops_fraction=1.02)}
  made, skipped, missed = results_table.fill(cells, store, benches.get, 0.01,
                                             'fashion_mnist')
  assert (made, skipped) == ([], 0)
  assert [m.split(':')[0] for m in missed] == [
      'Cell vgg_uniform_0.5_0_prune', 'Cell vgg_uniform_0.25_0_prune']
  benches['vgg'] = _FakeBench()
  made, skipped, missed = results_table.fill(cells, store, benches.get, 0.01,
                                             'fashion_mnist')
  assert (made, skipped, missed) == (cells, 0, [])
  assert results_table.fill(cells, store, benches.get, 0.01,
                            'fashion_mnist') == ([], 2, [])


# ------------------------------------------------------------ methods.


def test_fit_structure_hits_the_flops_with_a_global_threshold():
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  inputs = keras.Input((8, 8, 3))
  x = inputs
  for i, width in enumerate((32, 64)):
    x = keras.layers.Conv2D(width, 3, padding='same', name='c%d' % i)(x)
    x = keras.layers.BatchNormalization(name='c%d_bn' % i)(x)
    x = keras.layers.ReLU()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, keras.layers.Dense(4, name='logits')(x))
  # Distinct gammas, so every threshold keeps a known set.
  gammas = {'c0': (np.arange(1, 33) / 100.0).astype(np.float32),
            'c1': (np.arange(1, 65) / 1000.0).astype(np.float32)}
  for name, values in gammas.items():
    model.get_layer(name + '_bn').gamma.assign(values)
  reg = morph_keras.ModelRegularizer(model, 'GammaFlopsRegularizer',
                                     gamma_threshold=0.05)
  coster = morph_keras.StructureCost(reg)
  target = 0.5 * coster.cost({})
  structure, masks, info = results_methods.fit_structure(reg, coster, target,
                                                         0.01)
  assert abs(coster.cost(structure) / target - 1) <= 0.01
  # One global threshold: every channel above it stays, none below.
  assert info['multiplier'] is None
  assert info['threshold_flops'] == coster.cost(structure)
  assert structure == {name: int(np.sum(values > info['threshold']))
                       for name, values in gammas.items()}
  assert structure == {'c0': 29, 'c1': 34}
  for name, width in structure.items():
    assert int(masks[name].sum()) == width
    # The kept channels are those of the largest gammas: a suffix.
    assert masks[name].tolist() == [False] * (len(masks[name]) - width) + [
        True] * width


def test_gamma_l1_loss_needs_batch_norms():
  inputs = keras.Input((4,))
  model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name='plain')
  with pytest.raises(errors.InvalidArgumentError) as raised:
    results_methods._GammaL1Loss(model, 1e-4)  # pylint: disable=protected-access
  assert str(raised.value) == (
      "Invalid value for argument `model`: model 'plain' has no batch-norm "
      'gamma, so Network Slimming (unweighted L1 on gammas) cannot prune '
      'it. Use a network with scaled batch norms.')


def test_cifar10_loader_on_a_fake_dataset():
  tfds = pytest.importorskip('tensorflow_datasets')
  budget = results_methods.Budget(train_examples=8, test_examples=5)
  with tfds.testing.mock_data(num_examples=12):
    data = results_methods.load_data('cifar10', 'resnet', budget)
  assert data.x_train.shape == (8, 32, 32, 3)
  assert data.x_test.shape == (5, 32, 32, 3)
  assert data.x_train.dtype == np.float32
  assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
  assert data.y_train.dtype == np.int64 and data.y_train.max() < 10


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_fashion_mnist_is_resized_for_mobilenet_only():
  budget = results_methods.Budget(train_examples=8, test_examples=5)
  small = results_methods.load_data('fashion_mnist', 'vgg', budget)
  wide = results_methods.load_data('fashion_mnist', 'mobilenet_v2', budget)
  assert small.x_train.shape == (8, 28, 28, 1)
  assert wide.x_train.shape == (8, 32, 32, 3) and wide.x_test.shape == (
      5, 32, 32, 3)


@pytest.mark.parametrize('network,shape,gates', [
    ('resnet', (28, 28, 1), 9), ('mobilenet_v2', (32, 32, 3), 52)])
def test_every_figs_gate_of_the_gated_networks_is_pressed(network, shape,
                                                         gates):
  """A gate after every batch norm: before the gate-group fix
  (tests/keras/test_gate_groups.py) 5 of the ResNet's 9 and 49 of
  MobileNetV2's 52 gates had a zero gradient from the FiGS term."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = networks.build_model(network, shape, True, 10)
  regularizer = morph_keras.ModelRegularizer(
      model, 'LogisticSigmoidFlopsRegularizer')
  found = [layer for layer in model._flatten_layers()  # pylint: disable=protected-access
           if isinstance(layer, activation_gating.LogisticSigmoidGating)]
  assert len(found) == gates
  with tf.GradientTape() as tape:
    term = regularizer.term()
  grads = tape.gradient(term, [gate.log_odds for gate in found])
  unpressed = [gate.name for gate, grad in zip(found, grads)
               if grad is None or not np.any(grad.numpy()[1:] > 0)]
  assert not unpressed


# ------------------------------------------------------------- report.


def _record(method, seed, accuracy, stage='scratch', seconds=2.0):
  return {'network': 'vgg', 'method': method, 'target': 0.5, 'seed': seed,
          'stage': stage, 'accuracy': accuracy, 'flops': 500.0,
          'original_flops': 1000.0, 'flops_distance': 0.0,
          'seconds': seconds}


def test_report_tables_and_plot_data(tmp_path):
  records = [_record('gamma', 0, 0.90), _record('gamma', 1, 0.86),
             _record('uniform', 0, 0.88), _record('uniform', 1, 0.85),
             _record('gamma', 0, None, stage='prune', seconds=10.0)]
  text = results_report.write(records, str(tmp_path), 0.01)
  assert (tmp_path / 'table.md').read_text() == text + '\n'
  lines = text.splitlines()
  assert lines[2] == ('| vgg | scratch | 0.50 | gamma | 2 | 0.001 | 0.00% | '
                      '88.00 +- 2.83 [62.59, 113.41] | +1.50 +- 0.71 '
                      '[-4.85, +7.85] | - |')
  assert lines[3] == ('| vgg | scratch | 0.50 | uniform | 2 | 0.001 | 0.00% '
                      '| 86.50 +- 2.12 [67.44, 105.56] | - | - |')
  assert ('Equal FLOPs: 5 cells, every one within 1% of its target '
          '(largest distance 0.00%).') in lines
  assert '| vgg | gamma | prune | 1 | 10.0 | 10 |' in lines
  assert '| vgg | gamma | scratch | 2 | 2.0 | 4 |' in lines
  assert lines[-1] == '5 cells, 18 s (0.01 h) in all.'
  csv = (tmp_path / 'plot.csv').read_text().splitlines()
  assert csv[0] == ('network,stage,method,target,seeds,accuracy_mean,'
                    'accuracy_std,ci_low,ci_high')
  assert csv[1].startswith('vgg,scratch,gamma,0.5,2,88.0')
  assert (tmp_path / 'plot.png').stat().st_size > 0


def test_report_has_the_rebuilt_accuracy_before_fine_tuning(tmp_path):
  records = [dict(_record(m, seed, after, stage='finetune'),
                  accuracy_before_finetune=before)
             for m, seed, before, after in (
                 ('gamma', 0, 0.80, 0.90), ('gamma', 1, 0.76, 0.86),
                 ('uniform', 0, 0.70, 0.88), ('uniform', 1, 0.72, 0.85))]
  lines = results_report.write(records, str(tmp_path), 0.01).splitlines()
  assert lines[2] == ('| vgg | rebuilt | 0.50 | gamma | 2 | 0.001 | 0.00% | '
                      '78.00 +- 2.83 [52.59, 103.41] | +7.00 +- 4.24 '
                      '[-31.12, +45.12] | - |')
  assert lines[4] == ('| vgg | finetune | 0.50 | gamma | 2 | 0.001 | 0.00% | '
                      '88.00 +- 2.83 [62.59, 113.41] | +1.50 +- 0.71 '
                      '[-4.85, +7.85] | - |')
  # The runtime table counts the finetune cells once.
  assert lines[-1] == '4 cells, 8 s (0.00 h) in all.'


def test_report_differences_of_morphnet_to_network_slimming():
  records = [_record('gamma', 0, 0.90), _record('gamma', 1, 0.86),
             _record('figs', 0, 0.85), _record('figs', 1, 0.83),
             _record('l1', 0, 0.88), _record('l1', 1, 0.83),
             _record('uniform', 0, 0.80), _record('uniform', 1, 0.81)]
  by_method = {r['method']: r for r in results_report.rows(records)}
  gamma = by_method['gamma']['difference_l1']
  assert (gamma['n'], gamma['mean'], gamma['std']) == (
      2, pytest.approx(2.5), pytest.approx(0.7071, abs=1e-4))
  assert gamma['ci_low'] == pytest.approx(2.5 - 12.7062 * 0.5, abs=1e-3)
  figs = by_method['figs']['difference_l1']
  assert (figs['mean'], figs['std']) == (pytest.approx(-1.5),
                                         pytest.approx(2.1213, abs=1e-4))
  # Only MorphNet's methods are set against l1.
  assert by_method['l1']['difference_l1'] is None
  assert by_method['uniform']['difference_l1'] is None
  line = results_report.markdown([by_method['gamma']])
  assert line.splitlines()[-1].endswith(
      '| +2.50 +- 0.71 [-3.85, +8.85] |')


def test_report_summary_one_table_per_network(tmp_path):
  records = [_record('gamma', 0, 0.90), _record('gamma', 1, 0.86),
             _record('uniform', 0, 0.88), _record('uniform', 1, 0.85),
             _record('l1', 0, 0.87),
             dict(_record('uniform', 0, 0.80, stage='original'),
                  flops=1000.0, target=1.0),
             dict(_record('gamma', 0, 0.70), network='resnet'),
             dict(_record('uniform', 0, 0.60), network='resnet')]
  results_report.write(records, str(tmp_path), 0.01)
  assert (tmp_path / 'summary.md').read_text().splitlines() == [
      'Accuracy (%), mean over the seeds; in brackets the difference to '
      'uniform paired by seed, points, with its 95% t interval.',
      '',
      '**resnet**',
      '',
      '| stage | target | seeds | gamma | l1 | uniform |',
      '|---|---:|---:|---|---|---|',
      '| scratch | 0.50 | 1 | 70.00 (+10.00, 1 seed) | - | 60.00 |',
      '',
      '**vgg**',
      '',
      '| stage | target | seeds | gamma | l1 | uniform |',
      '|---|---:|---:|---|---|---|',
      # The fewest seeds of the line: l1 has one.
      '| scratch | 0.50 | 1 | 88.00 (+1.50 [-4.85, +7.85]) | '
      '87.00 (-1.00, 1 seed) | 86.50 |']


def test_report_plots_a_partial_table_without_warnings(tmp_path):
  import warnings  # pylint: disable=g-import-not-at-top
  records = [_record('gamma', 0, 0.90), _record('uniform', 0, 0.88),
             dict(_record('gamma', 0, 0.80, stage='expand1'), flops=1000.0),
             dict(_record('gamma', 0, 0.70), network='resnet')]
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # matplotlib's "No artists with labels".
    results_report.write(records, str(tmp_path), 0.01)
  assert (tmp_path / 'plot.png').stat().st_size > 0


def test_report_refuses_a_cell_off_its_target(tmp_path):
  bad = dict(_record('gamma', 0, 0.9), flops=520.0)
  with pytest.raises(results_methods.UnequalCostError,
                     match='Cell vgg_gamma_0.5_0_scratch: FLOPs 520'):
    results_report.write([bad], str(tmp_path), 0.01)


# ---------------------------------------------------------- smoke run.


def _run(args):
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, _BENCHMARK] + args,
                        capture_output=True, text=True, env=env,
                        timeout=1800, check=False)


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_smoke_every_stage_of_every_method_then_cached(tmp_path):
  tiny = ['--output_dir=%s' % tmp_path, '--networks=resnet',
          '--targets=0.5', '--seeds=0', '--train_examples=128',
          '--test_examples=64', '--prune_epochs=1', '--l1_epochs=1',
          '--train_epochs=1']
  first = _run(tiny)
  assert first.returncode == 0, first.stderr[-3000:]
  cells = tmp_path / 'fashion_mnist' / 'cells'
  stages = ('prune', 'scratch', 'finetune', 'expand1', 'reprune', 'expand2')
  expected = ['resnet_%s_0.5_0_%s.json' % (m, s)
              for m in ('gamma', 'figs', 'l1') for s in stages]
  expected += ['resnet_uniform_0.5_0_%s.json' % s for s in stages
               if s != 'reprune'] + ['resnet_uniform_1_0_original.json']
  assert sorted(n for n in os.listdir(cells) if n.endswith('.json')) == (
      sorted(expected))
  assert '24 cells made, 0 already stored.' in first.stdout
  for name in expected:
    with open(cells / name) as f:
      record = json.load(f)
    assert abs(record['flops_distance']) <= 0.01, name
  for method, reached in (('gamma', (True, False)), ('figs', (True, False)),
                          ('l1', (None,))):
    with open(cells / ('resnet_%s_0.5_0_prune.json' % method)) as f:
      prune = json.load(f)
    # One epoch at most (--prune_epochs=1, --l1_epochs=1); l1 has no target.
    assert prune['prune_epochs'] == 1, method
    assert prune['reached'] in reached, method
  with open(cells / 'resnet_gamma_0.5_0_finetune.json') as f:
    finetune = json.load(f)
  assert 0.0 <= finetune['accuracy_before_finetune'] <= 1.0
  table = (tmp_path / 'fashion_mnist' / 'table.md').read_text()
  for stage in ('original', 'scratch', 'finetune', 'expand1', 'expand2'):
    assert '| resnet | %s |' % stage in table
  assert 'Equal FLOPs: 24 cells, every one within 1% of its target' in table
  mtime = os.path.getmtime(cells / 'resnet_gamma_0.5_0_prune.json')
  second = _run(tiny + ['--only=method=gamma+uniform'])
  assert second.returncode == 0, second.stderr[-3000:]
  assert '0 cells made, 11 already stored.' in second.stdout
  assert os.path.getmtime(cells / 'resnet_gamma_0.5_0_prune.json') == mtime
