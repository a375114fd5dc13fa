"""Run as a script: saves a MorphNet-compiled model, or loads it afresh.

    saving_check.py save DIR   # trains 2 steps, writes DIR/*.keras, .h5
    saving_check.py load DIR   # in a new process: loads them, re-attaches

Keras 3, or tf_keras with TF_USE_LEGACY_KERAS=1. Prints one JSON line of
what the test compares.
"""

import json
import os
import sys

import numpy as np

from morph_net import keras as morph_keras
from morph_net.compat import keras as compat
from morph_net.network_regularizers import flop_regularizer
import check_models  # In this script's directory.

keras = compat.get_keras()
STRENGTH = 1e-4


def data():
  rng = np.random.RandomState(0)
  return rng.rand(16, 8, 8, 3).astype(np.float32), np.arange(16) % 3


def regularizer_of(model):
  return morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3,
      strength=STRENGTH)


def data_loss(model, x, y):
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  return float(loss(y, model.predict(x, verbose=0)))


def save(directory):
  keras.utils.set_random_seed(0)
  model = check_models.build(keras)
  regularizer = regularizer_of(model)
  model.compile(
      optimizer=keras.optimizers.SGD(0.01),
      loss=regularizer.wrap_loss(
          keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
      metrics=['accuracy'] + regularizer.metrics())
  x, y = data()
  model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
      keras.callbacks.ModelCheckpoint(os.path.join(directory, 'ckpt.keras')),
      keras.callbacks.ModelCheckpoint(
          os.path.join(directory, 'ckpt.weights.h5'),
          save_weights_only=True)])
  model.save(os.path.join(directory, 'compiled.keras'))
  plain = check_models.build(keras)
  plain.set_weights(model.get_weights())
  plain.save(os.path.join(directory, 'plain.keras'))
  return {'predictions': model.predict(x, verbose=0).tolist(),
          'data_loss': data_loss(model, x, y),
          'term': float(regularizer.term()),
          'cost': float(regularizer.cost())}


def _describe(model):
  loss = getattr(model, 'loss', None)
  return {'compiled': bool(model.get_compile_config()),
          'loss': type(loss).__name__,
          'attached': getattr(loss, 'regularizer', None) is not None}


def load(directory):
  x, y = data()
  path = lambda name: os.path.join(directory, name)
  compiled = keras.models.load_model(path('compiled.keras'))
  result = {'compiled': _describe(compiled)}
  result['detached'] = compiled.evaluate(x, y, batch_size=16, verbose=0,
                                         return_dict=True)
  result['data_loss'] = data_loss(compiled, x, y)
  result['iterations'] = int(compiled.optimizer.iterations.numpy())
  regularizer = regularizer_of(compiled)
  result['attached_parts'] = regularizer.attach(compiled)
  result['attached'] = compiled.evaluate(x, y, batch_size=16, verbose=0,
                                         return_dict=True)
  result['term'] = float(regularizer.term())
  result['cost'] = float(regularizer.cost())
  compiled.fit(x, y, batch_size=8, epochs=1, verbose=0)
  result['iterations_after_fit'] = int(compiled.optimizer.iterations.numpy())

  plain = keras.models.load_model(path('plain.keras'))
  checkpoint = keras.models.load_model(path('ckpt.keras'))
  weights = check_models.build(keras)
  weights.load_weights(path('ckpt.weights.h5'))
  result['plain'] = _describe(plain)
  result['checkpoint'] = _describe(checkpoint)
  result['predictions'] = {
      name: model.predict(x, verbose=0).tolist() for name, model in (
          ('plain', plain), ('checkpoint', checkpoint), ('weights', weights))}
  return result


if __name__ == '__main__':
  phase, run_dir = sys.argv[1:]
  print(json.dumps(save(run_dir) if phase == 'save' else load(run_dir)))
