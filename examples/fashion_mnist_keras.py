r"""Learns the channel counts of a small CNN on Fashion-MNIST with model.fit.

The MorphNet regularizer is one loss term: the FLOP cost shown in the
progress bar falls epoch by epoch while the network keeps training. The
learned structure is written to <output_dir>/learned_structure/alive_<step>.

  python3 examples/fashion_mnist_keras.py \
      --save_model=/tmp/morph_net_fashion_mnist/model.keras
  python3 examples/fashion_mnist_keras.py --regularizer=group_lasso_flops \
      --strength_multiplier=2 --epochs=5 --output_dir=/tmp/fmnist

With --save_model the trained model is saved compiled (with the MorphNet
loss and metrics, which load detached from any regularizer; see README), for
the command-line tools `export_structure` and `expand_structure`.

The output is the lines below and Keras's progress lines; library logs below
WARNING and TensorFlow's start-up notes (e.g. "failed call to cuInit" on a
machine without a GPU) show with --verbosity=0 (`morph_net.tools.startup`).
"""

import json
import os
import sys

if __package__ in (None, ''):  # Run as a script: make `examples` importable.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.tools import startup

if __name__ == '__main__':
  # Before TensorFlow is imported: its start-up notes (cuInit on a machine
  # without a GPU ...) are dropped unless --verbosity is given.
  startup.quiet_start()

from absl import flags

from examples import datasets
from morph_net import keras as morph_keras
from morph_net.compat import keras as compat
from morph_net.keras import batch_norm_statistics
from morph_net.latency import measurement
from morph_net.latency import timing
from morph_net.probabilistic_gating import activation_gating
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.network_regularizers import registry
from morph_net.surgery import rebuild
# pylint: enable=g-import-not-at-top,wrong-import-position

REGULARIZERS = {
    'gamma_flops': flop_regularizer.GammaFlopsRegularizer,
    'group_lasso_flops': flop_regularizer.GroupLassoFlopsRegularizer,
    'gamma_model_size': model_size_regularizer.GammaModelSizeRegularizer,
    'gamma_latency': latency_regularizer.GammaLatencyRegularizer,
    # Recommended by the original library (FiGS): gates after each conv,
    # with or without batch norm. The model gets LogisticSigmoidGating layers.
    'logistic_sigmoid_flops':
        logistic_sigmoid_regularizer.LogisticSigmoidFlopsRegularizer,
    'logistic_sigmoid_model_size':
        logistic_sigmoid_regularizer.LogisticSigmoidModelSizeRegularizer,
}

FLAGS = flags.FLAGS
flags.DEFINE_enum('regularizer', 'gamma_flops', sorted(REGULARIZERS),
                  'Which MorphNet regularizer to train with. '
                  'logistic_sigmoid_* (probabilistic gating, FiGS) is the '
                  'recommended family; gamma_* needs batch norm scale; '
                  'group_lasso_* works on any conv net.')
flags.DEFINE_float('target', 0.5,
                   'The budget: the cost to reach, as a fraction of the '
                   'initial cost (CostTargetCallback adapts the strength). '
                   '0 trains with a fixed --strength_multiplier instead.')
flags.DEFINE_float('strength_multiplier', None,
                   'With --target=0: the fixed strength as a multiple of '
                   '1 / initial cost (default: 2 for gamma / group lasso, '
                   '0.3 for gates).')
flags.DEFINE_float('threshold', 1e-2,
                   'Alive threshold (|gamma|, group lasso norm, or gate '
                   'mask for logistic_sigmoid_*): about twice the Adam '
                   'learning rate, so a channel counted dead has stopped '
                   'contributing (0.05 lost 0.5 point of test accuracy when '
                   'the dead channels were removed).')
flags.DEFINE_integer('epochs', 10, 'Training epochs with the regularizer.')
flags.DEFINE_integer('finetune_epochs', 2,
                     'Epochs of fine-tuning the rebuilt, smaller model.')
flags.DEFINE_integer('batch_size', 64, 'Batch size.')
flags.DEFINE_integer('train_examples', 6000,
                     'Training examples used (0: all 60000).')
flags.DEFINE_float('learning_rate', 5e-3, 'Adam learning rate.')
flags.DEFINE_integer('latency_repeats', 30,
                     'Timed rounds of the latency measurement (0: skip it).')
flags.DEFINE_string('output_dir', '/tmp/morph_net_fashion_mnist',
                    'Where structures and TensorBoard logs go.')
flags.DEFINE_string('data_dir', datasets.FASHION_MNIST_DIR,
                    'Directory of the Fashion-MNIST IDX files.')
flags.DEFINE_integer('seed', 0, 'Random seed.')
flags.DEFINE_string('save_model', None,
                    'Where to save the trained model (a .keras file), e.g. '
                    'for export_structure and expand_structure; the rebuilt, '
                    'fine-tuned model goes beside it as <name>_small.keras.')

# Statistics of the batch norms are re-estimated on this many training
# examples before each evaluation (they lag while gammas shrink).
_STATISTICS_EXAMPLES = 2048
_LATENCY_BATCH = 64


def build_model(keras, widths=(32, 64, 128), gated=False):
  """A small conv-BN-ReLU CNN for 28x28x1 inputs (gated: a gate per block)."""
  inputs = keras.Input((28, 28, 1))
  x = inputs
  for i, width in enumerate(widths):
    x = keras.layers.Conv2D(width, 3, strides=1 if i == 0 else 2,
                            padding='same', use_bias=False,
                            name='conv%d' % (i + 1))(x)
    x = keras.layers.BatchNormalization(momentum=0.9,
                                        name='bn%d' % (i + 1))(x)
    x = keras.layers.ReLU(name='relu%d' % (i + 1))(x)
    if gated:
      x = activation_gating.LogisticSigmoidGating(
          straight_through=True, temperature=1.0, log_odds_init=1.0,
          name='gate%d' % (i + 1))(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  outputs = keras.layers.Dense(10, name='logits')(x)
  return keras.Model(inputs, outputs, name='fashion_cnn')


def _make_regularizer(model):
  regularizer_class = REGULARIZERS[FLAGS.regularizer]
  kwargs = registry.threshold_kwargs(regularizer_class, FLAGS.threshold)
  if FLAGS.regularizer == 'gamma_latency':
    kwargs['hardware'] = 'V100'
  return morph_keras.ModelRegularizer(model, regularizer_class, **kwargs)


def _accuracy(model, x_train, x_test, y_test):
  """Test accuracy after re-estimating the batch-norm statistics."""
  batch_norm_statistics.recompute_statistics(
      model, x_train[:_STATISTICS_EXAMPLES])
  predictions = model.predict(x_test, batch_size=500, verbose=0)
  return float((predictions.argmax(-1) == y_test).mean())


def _latencies_ms(models):
  """Wall time of a forward pass of each model, ms: the fastest of
  `--latency_repeats` interleaved rounds (the least disturbed by other
  processes), after 10 warm-up calls, timed by `measurement.measure` (the
  allocator steady, as a serving process runs; in each round the second
  of two calls in a row, as a deployed model is called again and again)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.random.uniform((_LATENCY_BATCH, 28, 28, 1))
  calls = [timing.model_call(model, x) for model in models]
  report = measurement.measure(calls, settings=measurement.MeasurementSettings(
      repeats=FLAGS.latency_repeats, warmup=10, statistic='min',
      probe=False))
  return report.values() / 1e6


def main(argv):
  del argv
  keras = compat.get_keras()
  keras.utils.set_random_seed(FLAGS.seed)
  (x_train, y_train), (x_test, y_test) = datasets.load_dataset(
      'fashion_mnist', FLAGS.data_dir)
  if FLAGS.train_examples:
    x_train, y_train = (x_train[:FLAGS.train_examples],
                        y_train[:FLAGS.train_examples])

  model = build_model(
      keras, gated=FLAGS.regularizer.startswith('logistic_sigmoid'))
  regularizer = _make_regularizer(model)
  name = regularizer.cost_name
  initial = regularizer.initial_cost
  callbacks = []
  if FLAGS.target:
    target = FLAGS.target * initial
    callbacks.append(morph_keras.CostTargetCallback(regularizer, target))
    print('%s: initial %s = %.0f, target = %.0f (%g%% of initial)' %
          (regularizer.name, name, initial, target, 100 * FLAGS.target))
  else:
    multiplier = FLAGS.strength_multiplier
    if multiplier is None:
      multiplier = 0.3 if FLAGS.regularizer.startswith('logistic') else 2.0
    strength = regularizer.set_strength_relative_to_cost(multiplier)
    print('%s: initial %s = %.0f, strength = %.3g' %
          (regularizer.name, name, initial, strength))

  model.compile(
      optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
      loss=regularizer.wrap_loss(
          keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
      metrics=['accuracy'] + regularizer.metrics())

  def percent(cost):
    text = '%.1f%% of initial' % (100.0 * cost / initial)
    if FLAGS.target:
      text += ', %.1f%% of target' % (100.0 * cost / (FLAGS.target * initial))
    return text

  def report(epoch, logs):
    cost = float(regularizer.cost())
    print('epoch %d: %s = %.0f (%s), strength = %.3g, alive = %s' % (
        epoch + 1, name, cost, percent(cost),
        float(regularizer.strength.numpy()),
        json.dumps(regularizer.alive_counts(), sort_keys=True)))

  callbacks += [
      keras.callbacks.LambdaCallback(on_epoch_end=report),
      morph_keras.StructureExportCallback(regularizer, FLAGS.output_dir,
                                          every_n_steps=200),
      morph_keras.CostSummaryCallback(regularizer, FLAGS.output_dir),
  ]
  model.fit(x_train, y_train, batch_size=FLAGS.batch_size,
            epochs=FLAGS.epochs, callbacks=callbacks, verbose=2)
  cost = float(regularizer.cost())
  print('final %s = %.0f (%s); structure in %s' % (
      name, cost, percent(cost),
      os.path.join(FLAGS.output_dir, 'learned_structure', 'alive')))

  # The smaller model: the regularizer's alive channels, their weights, and
  # the removed channels' constant outputs folded into the next layers.
  accuracy = _accuracy(model, x_train, x_test, y_test)
  small = rebuild.rebuild(model, regularizer, transfer_weights=True)
  rebuilt_accuracy = _accuracy(small, x_train, x_test, y_test)
  small_cost = float(_make_regularizer(small).cost())
  small.compile(
      optimizer=keras.optimizers.Adam(FLAGS.learning_rate / 5),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])
  if FLAGS.finetune_epochs:
    small.fit(x_train, y_train, batch_size=FLAGS.batch_size,
              epochs=FLAGS.finetune_epochs, verbose=0)
  tuned_accuracy = _accuracy(small, x_train, x_test, y_test)
  print('test accuracy: regularized %.3f, rebuilt %.3f before fine-tuning, '
        '%.3f after %d epochs' % (accuracy, rebuilt_accuracy, tuned_accuracy,
                                  FLAGS.finetune_epochs))
  print('rebuilt model: %s = %.0f (a new regularizer on it), %d of %d '
        'parameters' % (name, small_cost, small.count_params(),
                        model.count_params()))
  if FLAGS.latency_repeats:
    original_ms, small_ms = _latencies_ms([model, small])
    print('latency (batch %d, fastest of %d interleaved rounds of 2 calls): '
          'original %.2f ms, rebuilt %.2f ms (%.2fx)' % (
              _LATENCY_BATCH, FLAGS.latency_repeats, original_ms, small_ms,
              small_ms / original_ms))
  if FLAGS.save_model:
    model.save(FLAGS.save_model)
    small_path = os.path.splitext(FLAGS.save_model)[0] + '_small.keras'
    small.save(small_path)
    print('saved the trained model to %s and the rebuilt one to %s' %
          (FLAGS.save_model, small_path))


if __name__ == '__main__':
  startup.run(main)  # Logging at WARNING unless --verbosity is given.
