r"""Does the cost target land? Every run trains once, to a named budget.

  python3 benchmarks/cost_target.py --output_dir=/tmp/cost_target
  python3 benchmarks/cost_target.py --output_dir=/tmp/cost_target \
      --architectures=vgg --resources=flops --targets=0.3 --seeds=0

For each architecture x resource (FLOPs, model size) x target fraction x
seed, one training run on Fashion-MNIST with a Gamma regularizer and
`morph_net.keras.CostTargetCallback(regularizer, target * initial_cost)`:
no strength is chosen by hand. Training runs epoch by epoch until the cost
(dead channels removed) has been within `--tolerance` of the target at the
end of `--hold` consecutive epochs, or `--max_epochs`. Then, with the
batch-norm statistics re-estimated on 2,048 training images:

- the regularized model's test accuracy;
- its accuracy with the dead channels' gammas set to 0 (the channels the
  regularizer calls dead, made exactly dead: what the rebuilt model should
  reproduce);
- the rebuilt model's (`rebuild(model, regularizer, transfer_weights=True)`:
  the regularizer's own alive channels, removed channels' constants folded
  into the next layers) test accuracy before any fine-tuning;
- the cost a fresh regularizer reports on the rebuilt model, which must be
  the final cost exactly.

Architectures (none designed for this benchmark): `mobilenet_v2`,
keras.applications MobileNetV2 (alpha 0.35, 32x32x3: images padded and
repeated to 3 channels) nested as one layer under a new head; `vgg`, a
VGG-style net whose widths double down the network (16-32-64-128, the
over-provisioned late layers of VGG); `resnet`, the examples' small ResNet
(16-32-64, one block per stage).

Every finished run is a JSON file under `<output_dir>/runs/` (its trained
weights beside it), skipped when present: the table fills over several
invocations. `--evaluate_only` re-evaluates stored runs without training.
"""

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
import numpy as np

FLAGS = flags.FLAGS

ARCHITECTURES = ('mobilenet_v2', 'vgg', 'resnet')  # networks.ARCHITECTURES
RESOURCES = {'flops': 'GammaFlopsRegularizer',
             'size': 'GammaModelSizeRegularizer'}


def define_flags():
  flags.DEFINE_string('output_dir', '/tmp/morph_net_cost_target',
                      'Where runs are cached and the table is written.')
  flags.DEFINE_list('architectures', list(ARCHITECTURES), 'Architectures.')
  flags.DEFINE_list('resources', sorted(RESOURCES), 'flops and/or size.')
  flags.DEFINE_list('targets', ['0.5'], 'Target fractions of the initial '
                    'cost.')
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
  flags.DEFINE_integer('train_examples', 6000, 'Training images.')
  flags.DEFINE_integer('batch_size', 64, 'Batch size.')
  flags.DEFINE_float('learning_rate', 5e-3, 'Adam learning rate.')
  flags.DEFINE_float('threshold', 0.01, 'Alive threshold (|gamma|): two Adam '
                     'steps at the learning rate, so a dead channel is near 0 '
                     '(0.05 left channels flickering at the threshold).')
  flags.DEFINE_float('tolerance', 0.03, 'Relative distance to the target '
                     'counted as reached.')
  flags.DEFINE_integer('hold', 2, 'Consecutive epoch ends within the '
                       'tolerance that end a run.')
  flags.DEFINE_integer('max_epochs', 20, 'Epochs at most per run.')
  flags.DEFINE_float('brake', None, 'CostTargetController brake (default: '
                     "the controller's).")
  flags.DEFINE_float('lead_steps', None, 'CostTargetCallback lead_steps '
                     "(default: the callback's).")
  flags.DEFINE_float('lead_margin', None, 'CostTargetController lead_margin '
                     "(default: the controller's).")
  flags.DEFINE_boolean('evaluate_only', False, 'Only (re-)evaluate stored '
                       'runs; train nothing.')
  flags.DEFINE_boolean('train_only', False, 'Train and store runs; evaluate '
                       'them later.')


# ----------------------------------------------------------------- models.


def build_model(architecture: str):
  """The benchmark's model `architecture` (`networks.build_model`)."""
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  return networks.build_model(architecture)


def load_data(architecture: str, train_examples: int):
  """Fashion-MNIST in [0, 1]; 32x32x3 (padded, repeated) for MobileNetV2."""
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from examples import datasets  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = datasets.load_dataset(
      'fashion_mnist', datasets.FASHION_MNIST_DIR)

  def prepare(images):
    images = networks.unit_images(images)
    if architecture == 'mobilenet_v2':
      images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
      images = np.repeat(images, 3, axis=-1)
    return images

  return ((prepare(x_train[:train_examples]), y_train[:train_examples]),
          (prepare(x_test), y_test))


# ------------------------------------------------------------------ a run.


def _regularizer(model):
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  return morph_keras.ModelRegularizer(
      model, RESOURCES[_regularizer.resource], gamma_threshold=FLAGS.threshold)


def _accuracy(model, x_train, x_test, y_test) -> float:
  from morph_net.keras import batch_norm_statistics  # pylint: disable=g-import-not-at-top
  batch_norm_statistics.recompute_statistics(model, x_train[:2048])
  predictions = model.predict(x_test, batch_size=500, verbose=0)
  return float((predictions.argmax(-1) == y_test).mean())


def train_to_target(model, regularizer, target_cost, x_train, y_train,
                    batch_size, learning_rate, max_epochs, tolerance, hold,
                    knobs=None, key='', jit_compile='auto'):
  """Trains `model` under `regularizer` until its cost holds at the target.

  `CostTargetCallback(regularizer, target_cost, **knobs)` sets the strength;
  the model is compiled with Adam at `learning_rate` and the regularizer's
  loss, then trained epoch by epoch until the cost (dead channels removed)
  has been within `tolerance` of the target at the end of `hold`
  consecutive epochs, or `max_epochs`.

  Args:
    model: the Keras model `regularizer` was built on.
    regularizer: a `morph_net.keras.ModelRegularizer`.
    target_cost: the cost to reach, in the regularizer's unit.
    x_train: training images.
    y_train: their labels.
    batch_size: batch size.
    learning_rate: Adam learning rate.
    max_epochs: epochs at most.
    tolerance: relative distance to the target counted as reached.
    hold: consecutive epoch ends within the tolerance that end training.
    knobs: CostTargetCallback keyword arguments (brake, lead_steps ...).
    key: the run's name in the log lines.
    jit_compile: `Model.compile`'s `jit_compile` ('auto', True, False).

  Returns:
    {'epoch_costs', 'epochs', 'reached', 'final_cost', 'train_seconds'}.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  callback = morph_keras.CostTargetCallback(regularizer, target_cost,
                                            **(knobs or {}))
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss=regularizer.wrap_loss(
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True)),
                jit_compile=jit_compile)
  costs, held, start = [], 0, time.time()
  for epoch in range(max_epochs):
    model.fit(x_train, y_train, batch_size=batch_size,
              epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=[callback])
    costs.append(float(regularizer.cost()))
    within = abs(costs[-1] / target_cost - 1) <= tolerance
    held = held + 1 if within else 0
    logging.info('%s epoch %d: %.1f%% of target, strength %.3g', key,
                 epoch + 1, 100 * costs[-1] / target_cost,
                 callback.controller.strength)
    if held >= hold:
      break
  return {'epoch_costs': costs, 'epochs': len(costs), 'reached': held >= hold,
          'final_cost': costs[-1], 'train_seconds': time.time() - start}


def train(key, architecture, resource, target, seed, data, paths):
  """Trains one run to its target; returns its training record."""
  import keras  # pylint: disable=g-import-not-at-top
  (x_train, y_train), _ = data
  keras.utils.set_random_seed(seed)
  model = build_model(architecture)
  _regularizer.resource = resource
  regularizer = _regularizer(model)
  initial = regularizer.initial_cost
  knobs = {name: getattr(FLAGS, name) for name in ('brake', 'lead_steps',
                                                   'lead_margin')
           if getattr(FLAGS, name) is not None}
  trained = train_to_target(
      model, regularizer, target * initial, x_train, y_train,
      FLAGS.batch_size, FLAGS.learning_rate, FLAGS.max_epochs,
      FLAGS.tolerance, FLAGS.hold, knobs, key)
  model.save_weights(paths['weights'])
  return {'architecture': architecture, 'resource': resource,
          'target': target, 'seed': seed, 'initial_cost': initial,
          'target_cost': target * initial,
          'epoch_costs': trained['epoch_costs'], 'epochs': trained['epochs'],
          'reached': trained['reached'], 'threshold': FLAGS.threshold,
          'final_cost': trained['final_cost'],
          'train_seconds': trained['train_seconds'],
          'alive': regularizer.alive_counts()}


def _zero_dead_gammas(model, threshold: float) -> int:
  """Sets every batch-norm gamma at or below `threshold` to 0 (in nested
  models too): the channels the Gamma regularizer calls dead, made exactly
  constant. Returns how many were set."""
  import keras  # pylint: disable=g-import-not-at-top
  zeroed = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      zeroed += _zero_dead_gammas(layer, threshold)
    elif isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
      gamma = np.array(layer.gamma.numpy())
      dead = np.abs(gamma) <= threshold
      gamma[dead] = 0.0
      layer.gamma.assign(gamma)
      zeroed += int(dead.sum())
  return zeroed


def masked_accuracy(record, data, paths) -> float:
  """Test accuracy of the trained model with its dead channels' gammas 0.

  It separates the two ways a rebuilt model can lose accuracy: the signal
  the dead channels still carried (their gammas are small, not 0: trained
  vs. masked) and inexact folding (masked vs. rebuilt).
  """
  (x_train, _), (x_test, y_test) = data
  model = build_model(record['architecture'])
  model.load_weights(paths['weights'])
  _zero_dead_gammas(model, record.get('threshold', 0.05))
  return _accuracy(model, x_train, x_test, y_test)


def evaluate(record, data, paths):
  """Adds the accuracies and the rebuilt model's cost to `record`."""
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
  (x_train, _), (x_test, y_test) = data
  model = build_model(record['architecture'])
  model.load_weights(paths['weights'])
  _regularizer.resource = record['resource']
  regularizer = _regularizer(model)
  final = float(regularizer.cost())
  small = rebuild.rebuild(model, regularizer, transfer_weights=True)
  record.update({
      'final_cost_reloaded': final,
      'rebuilt_cost': float(_regularizer(small).cost()),
      'rebuilt_top_level_layers': len(small.layers),
      'top_level_layers': len(model.layers),
      'accuracy': _accuracy(model, x_train, x_test, y_test),
      'rebuilt_accuracy': _accuracy(small, x_train, x_test, y_test),
      'masked_accuracy': masked_accuracy(record, data, paths),
  })
  return record


# ----------------------------------------------------------------- table.


def table(records) -> str:
  """A Markdown table of the runs and a summary line."""
  lines = ['| architecture | resource | target | seed | epochs | cost / '
           'target | accuracy | dead gammas 0 | rebuilt, not fine-tuned | '
           'rebuilt cost = final | train s |', '|' + '---|' * 11]
  for r in records:
    ratio = r['final_cost'] / r['target_cost']
    rebuilt = r.get('rebuilt_accuracy')
    masked = r.get('masked_accuracy')
    lines.append('| %s | %s | %.2f | %d | %d | %.1f%% | %s | %s | %s | %s | '
                 '%.0f |'
                 % (r['architecture'], r['resource'], r['target'], r['seed'],
                    r['epochs'], 100 * ratio,
                    '%.4f' % r['accuracy'] if 'accuracy' in r else '-',
                    '%.4f' % masked if masked is not None else '-',
                    '%.4f' % rebuilt if rebuilt is not None else '-',
                    ('yes' if r['rebuilt_cost'] == r['final_cost_reloaded']
                     else 'NO (%.0f vs %.0f)' % (r['rebuilt_cost'],
                                                 r['final_cost_reloaded']))
                    if 'rebuilt_cost' in r else '-', r['train_seconds']))
  if records:
    deviations = [abs(r['final_cost'] / r['target_cost'] - 1)
                  for r in records]
    gaps = [100 * (r['accuracy'] - r['rebuilt_accuracy'])
            for r in records if 'rebuilt_accuracy' in r]
    lines.append('')
    lines.append('%d runs: %d within %.0f%% of the target (largest distance '
                 '%.1f%%), epochs %d-%d; accuracy lost by rebuilding: %s' % (
                     len(records),
                     sum(d <= FLAGS.tolerance for d in deviations),
                     100 * FLAGS.tolerance, 100 * max(deviations),
                     min(r['epochs'] for r in records),
                     max(r['epochs'] for r in records),
                     ('%.2f to %.2f points' % (min(gaps), max(gaps)))
                     if gaps else 'not evaluated'))
  return '\n'.join(lines)


def main(argv):
  del argv
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  runs_dir = os.path.join(FLAGS.output_dir, 'runs')
  os.makedirs(runs_dir, exist_ok=True)
  records, data = [], {}
  # Seeds outermost: a partial table covers every architecture first.
  for seed in [int(s) for s in FLAGS.seeds]:
    for architecture in FLAGS.architectures:
      for resource in FLAGS.resources:
        for target in [float(t) for t in FLAGS.targets]:
          key = '%s_%s_%g_%d' % (architecture, resource, target, seed)
          paths = {'record': os.path.join(runs_dir, key + '.json'),
                   'weights': os.path.join(runs_dir, key + '.weights.h5')}
          record = None
          if os.path.exists(paths['record']):
            with open(paths['record']) as f:
              record = json.load(f)
          if record is None and FLAGS.evaluate_only:
            continue
          if architecture not in data:
            data[architecture] = load_data(architecture, FLAGS.train_examples)
          if record is None:
            record = train(key, architecture, resource, target, seed,
                           data[architecture], paths)
          if not FLAGS.train_only and ('accuracy' not in record or
                                       FLAGS.evaluate_only):
            record = evaluate(record, data[architecture], paths)
          elif not FLAGS.train_only and 'masked_accuracy' not in record:
            record['masked_accuracy'] = masked_accuracy(
                record, data[architecture], paths)
          atomic_file.write_json_atomically(record, paths['record'])
          records.append(record)
          print(table([record]).splitlines()[2], flush=True)
  text = table(records)
  print(text)
  atomic_file.write_text_atomically(
      text + '\n', os.path.join(FLAGS.output_dir, 'table.md'))


if __name__ == '__main__':
  define_flags()
  app.run(main)
