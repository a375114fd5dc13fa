"""Run as a script: one worker of a MultiWorkerMirroredStrategy MorphNet run.

    TF_CONFIG=... multi_worker_check.py MODE LOG_DIR

MODE is 'fit' (`model.fit`: tf_keras with TF_USE_LEGACY_KERAS=1, or Keras 3),
'loop' (a Keras 3 custom training loop: `strategy.run` over
`experimental_distribute_dataset`) or 'plain_fit' (`model.fit` of the same
model without MorphNet, to show what the strategy itself supports). Each worker trains one step on its half
of a global batch of 8 with SGD, the MorphNet loss (strength STRENGTH) and,
with 'fit', a StructureExportCallback writing to LOG_DIR/worker<index>. It
then repeats the step on one device (no strategy) from the same weights.
Prints one JSON line: the replica count, whether it is the chief, the term,
the batch-norm gamma after the distributed step and after the one-device
step, and the files the callback wrote.
"""

import json
import os
import sys

import tensorflow as tf

# The strategy must exist before TensorFlow runs any op.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net import keras as morph_keras  # pylint: disable=wrong-import-position
from morph_net.compat import keras as compat  # pylint: disable=wrong-import-position
from morph_net.network_regularizers import flop_regularizer  # pylint: disable=wrong-import-position
import check_models  # pylint: disable=wrong-import-position

keras = compat.get_keras()
GAMMA = [0.5, -1.0, 1.5, 2.0]
STRENGTH = 1e-4
LEARNING_RATE = 0.1
GLOBAL_BATCH = 8


def setup():
  keras.utils.set_random_seed(1)
  model = check_models.build(keras)
  model.get_layer('bn1').gamma.assign(GAMMA)
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3,
      strength=STRENGTH)
  return model, regularizer, keras.optimizers.SGD(LEARNING_RATE)


def data():
  # Zero images: the normalized activations are 0, so the data loss does
  # not move gamma and per-worker batch statistics equal global ones.
  return (np.zeros((GLOBAL_BATCH, 8, 8, 3), np.float32),
          np.arange(GLOBAL_BATCH) % 3)


def train_with_fit(strategy, log_dir):
  with strategy.scope():
    model, regularizer, optimizer = setup()
    model.compile(optimizer=optimizer, loss=regularizer.wrap_loss(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
                  metrics=regularizer.metrics())
  term = float(regularizer.term())
  callbacks = [] if log_dir is None else [
      morph_keras.StructureExportCallback(regularizer, log_dir,
                                          every_n_steps=1, plot=False)]
  x, y = data()
  model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0,
            callbacks=callbacks)
  return term, model


def train_with_loop(strategy, log_dir):
  del log_dir
  with strategy.scope():
    model, regularizer, optimizer = setup()
  term = float(regularizer.term())
  dataset = tf.data.Dataset.from_tensor_slices(data()).batch(GLOBAL_BATCH)

  def replica_step(x, y):
    with tf.GradientTape() as tape:
      logits = model(x, training=True)
      per_example = keras.losses.sparse_categorical_crossentropy(
          y, logits, from_logits=True)
      loss = (tf.nn.compute_average_loss(per_example,
                                         global_batch_size=GLOBAL_BATCH) +
              tf.nn.scale_regularization_loss(regularizer.loss()))
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  @tf.function
  def step(x, y):
    strategy.run(replica_step, args=(x, y))

  for x, y in strategy.experimental_distribute_dataset(dataset):
    step(x, y)
  return term, model


def train_without_morph_net(strategy):
  with strategy.scope():
    model = check_models.build(keras)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
  x, y = data()
  model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0)


def main():
  mode, base_dir = sys.argv[1:]
  if mode == 'plain_fit':
    train_without_morph_net(STRATEGY)
    print(json.dumps({'trained': True}))
    return
  task = json.loads(os.environ['TF_CONFIG'])['task']['index']
  log_dir = os.path.join(base_dir, 'worker%d' % task)
  train = train_with_fit if mode == 'fit' else train_with_loop
  term, model = train(STRATEGY, log_dir if mode == 'fit' else None)
  gamma = model.get_layer('bn1').gamma.numpy().tolist()
  single_term, single_model = train(tf.distribute.get_strategy(), None)
  files = []
  for root, _, names in os.walk(log_dir):
    files += [os.path.relpath(os.path.join(root, n), log_dir) for n in names]
  print(json.dumps({
      'replicas': STRATEGY.num_replicas_in_sync,
      'is_chief': morph_keras.is_chief(STRATEGY),
      'term': term, 'gamma': gamma, 'single_term': single_term,
      'single_gamma': single_model.get_layer('bn1').gamma.numpy().tolist(),
      'files': sorted(files)}))


if __name__ == '__main__':
  main()
