r"""Training-step time with the MorphNet loss term vs without, side by side.

Builds the same ResNet-style CNN twice (batch norm after every conv), trains
one with `ModelRegularizer.wrap_loss` and one with the plain loss, and times
rounds of `fit` steps alternately, so both see the same machine load.

  python3 benchmarks/step_overhead.py --batch_size=64 --rounds=7
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from morph_net import keras as morph_keras
from morph_net.compat import keras as compat
from morph_net.network_regularizers import flop_regularizer

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch_size', 64, 'Batch size.')
flags.DEFINE_integer('image_size', 32, 'Input height and width.')
flags.DEFINE_integer('steps_per_round', 10, 'Train steps timed per round.')
flags.DEFINE_integer('rounds', 7, 'Timed rounds per model (median taken).')
flags.DEFINE_list('widths', ['32', '64', '128'], 'Stage widths.')
flags.DEFINE_integer('blocks_per_stage', 2, 'Residual blocks per stage.')


def resnet(keras, size, widths, blocks):
  """A small ResNet: conv-BN-ReLU stem, residual stages, GAP, dense."""
  def conv_bn(x, filters, strides, name, relu=True):
    x = keras.layers.Conv2D(filters, 3, strides, padding='same',
                            use_bias=False, name=name + '_conv')(x)
    x = keras.layers.BatchNormalization(name=name + '_bn')(x)
    return keras.layers.ReLU(name=name + '_relu')(x) if relu else x

  inputs = keras.Input((size, size, 3))
  x = conv_bn(inputs, widths[0], 1, 'stem')
  for s, width in enumerate(widths):
    for b in range(blocks):
      name = 's%d_b%d' % (s, b)
      strides = 2 if (b == 0 and s > 0) else 1
      shortcut = x
      if strides != 1 or x.shape[-1] != width:
        shortcut = conv_bn(x, width, strides, name + '_proj', relu=False)
      y = conv_bn(x, width, strides, name + '_a')
      y = conv_bn(y, width, 1, name + '_b', relu=False)
      x = keras.layers.ReLU(name=name + '_out')(
          keras.layers.Add(name=name + '_add')([shortcut, y]))
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(10, name='logits')(x))


def main(argv):
  del argv
  keras = compat.get_keras()
  widths = [int(w) for w in FLAGS.widths]
  rng = np.random.RandomState(0)
  n = FLAGS.batch_size * FLAGS.steps_per_round
  x = rng.rand(n, FLAGS.image_size, FLAGS.image_size, 3).astype(np.float32)
  y = rng.randint(0, 10, n)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  # The first model a process trains runs at a different speed from later
  # ones (seen here: up to 25%), so a throwaway model goes first, and a
  # second plain model measures the noise floor of the comparison.
  models = {}
  regularizer = None
  for label in ('warm_up', 'plain', 'morph_net', 'plain_control'):
    keras.utils.set_random_seed(0)
    model = resnet(keras, FLAGS.image_size, widths, FLAGS.blocks_per_stage)
    model_loss = loss
    if label == 'morph_net':
      regularizer = morph_keras.ModelRegularizer(
          model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-2)
      regularizer.set_strength_relative_to_cost(1.0)
      model_loss = regularizer.wrap_loss(loss)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=model_loss)
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0)  # Warm.
    models[label] = model
  del models['warm_up']

  times = {label: [] for label in models}
  order = list(models)
  for round_index in range(FLAGS.rounds):
    for label in (order if round_index % 2 == 0 else order[::-1]):
      model = models[label]
      start = time.perf_counter()
      model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
      times[label].append(
          (time.perf_counter() - start) / FLAGS.steps_per_round)
  medians = {label: float(np.median(t)) for label, t in times.items()}
  print('params %d, batch %d, %dx%d inputs, %d rounds x %d steps' % (
      models['plain'].count_params(), FLAGS.batch_size, FLAGS.image_size,
      FLAGS.image_size, FLAGS.rounds, FLAGS.steps_per_round))
  for label, median in medians.items():
    print('%-14s median step %.1f ms' % (label, 1000 * median))
  plain = 0.5 * (medians['plain'] + medians['plain_control'])
  print('step time ratio (morph_net / plain): %.3f' % (
      medians['morph_net'] / plain))
  print('noise floor (plain_control / plain): %.3f' % (
      medians['plain_control'] / medians['plain']))
  term_ms = 1000 * _term_and_gradient_time(regularizer, models['morph_net'])
  print('term + gradient alone: %.2f ms per step (%.2f%% of a plain step)' % (
      term_ms, 100 * term_ms / (1000 * plain)))


def _term_and_gradient_time(regularizer, model, repeats=50):
  """Seconds to compute the term and its gradient, in a compiled function."""
  variables = [w.value if hasattr(w, 'value') and not callable(w.value) else w
               for w in model.trainable_weights]

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      term = regularizer.loss()
    return tape.gradient(term, variables)

  step()
  start = time.perf_counter()
  for _ in range(repeats):
    step()
  return (time.perf_counter() - start) / repeats


if __name__ == '__main__':
  app.run(main)
