"""Run as a script: compares the MorphNet term on one device and under
MirroredStrategy over two logical CPUs, then trains two steps. Prints JSON."""

import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net import keras as morph_keras  # pylint: disable=wrong-import-position
from morph_net.compat import keras as compat  # pylint: disable=wrong-import-position
from morph_net.network_regularizers import flop_regularizer  # pylint: disable=wrong-import-position
import check_models  # pylint: disable=wrong-import-position

keras = compat.get_keras()


def term_of(strategy):
  keras.utils.set_random_seed(1)
  with strategy.scope():
    model = check_models.build(keras)
    model.get_layer('bn1').gamma.assign([0.5, 1.0, 1.5, 2.0])
    reg = morph_keras.ModelRegularizer(
        model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3,
        strength=1e-3)
    model.compile(optimizer='sgd', loss=reg.wrap_loss(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
  term = float(reg.term())
  model.fit(np.zeros((8, 8, 8, 3), np.float32), np.zeros(8), batch_size=8,
            epochs=1, verbose=0)
  return term, float(reg.cost()), model.get_layer('bn1').gamma.numpy().tolist()


def target_of(strategy):
  """Strengths CostTargetCallback sets in 3 steps of fit under `strategy`."""
  keras.utils.set_random_seed(1)
  with strategy.scope():
    model = check_models.build(keras)
    reg = morph_keras.ModelRegularizer(
        model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
    model.compile(optimizer='sgd', loss=reg.wrap_loss(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
  target = morph_keras.CostTargetCallback(reg, 0.5 * reg.initial_cost)
  strengths = []
  record = keras.callbacks.LambdaCallback(
      on_train_batch_end=lambda batch, logs: strengths.append(
          float(reg.strength.numpy())))
  model.fit(np.zeros((24, 8, 8, 3), np.float32), np.zeros(24), batch_size=8,
            epochs=1, verbose=0, callbacks=[target, record])
  return strengths, target.controller.strength


def main():
  single = term_of(tf.distribute.get_strategy())
  mirrored_strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  mirrored = term_of(mirrored_strategy)
  print(json.dumps({'single': single, 'mirrored': mirrored,
                    'replicas': mirrored_strategy.num_replicas_in_sync,
                    'target_single': target_of(tf.distribute.get_strategy()),
                    'target_mirrored': target_of(mirrored_strategy)}))


if __name__ == '__main__':
  main()
