"""Small gated networks (Keras and TF1 graphs) for probabilistic gating tests.

Keras models are analysed as traced graphs:

    model = gating_models.gated_chain()
    fn = gating_models.trace(model)
    with fn.graph.as_default():
      reg = logistic_sigmoid_regularizer.LogisticSigmoidFlopsRegularizer(
          gating_models.output_ops(fn))
      cost = reg.get_cost()
    gating_models.evaluate(fn, cost)  # Reads the live Keras variables.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from morph_net.compat import keras as compat
from morph_net.probabilistic_gating import activation_gating

keras = compat.get_keras()

OPEN = 20.0  # Log-odds of a gate that is open (sigmoid ~ 1).
SHUT = -20.0  # Log-odds of a gate that is shut.


def gate(name, **kwargs):
  """A LogisticSigmoidGating layer; channel 0 is not forced open by default."""
  kwargs.setdefault('keep_first_channel_alive', False)
  return activation_gating.LogisticSigmoidGating(name=name, **kwargs)


def gated_chain(input_shape=(8, 8, 3), filters=(4, 6), **gate_kwargs):
  """conv1 (3x3 same) -> gate1 -> conv2 (3x3 same) -> gate2 -> ..."""
  inputs = keras.Input(input_shape)
  y = inputs
  for i, width in enumerate(filters):
    y = keras.layers.Conv2D(width, 3, padding='same', use_bias=False,
                            name='conv%d' % (i + 1))(y)
    y = gate('gate%d' % (i + 1), **gate_kwargs)(y)
  return keras.Model(inputs, y)


def gated_residual(input_shape=(8, 8, 3), **gate_kwargs):
  """conv_a (4) -> gate_a ; conv_b(gate_a) (4) -> gate_b ; add ; conv_c (5)."""
  inputs = keras.Input(input_shape)
  a = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                          name='conv_a')(inputs)
  a = gate('gate_a', **gate_kwargs)(a)
  b = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                          name='conv_b')(a)
  b = gate('gate_b', **gate_kwargs)(b)
  y = keras.layers.Add(name='add')([a, b])
  y = keras.layers.Conv2D(5, 1, use_bias=False, name='conv_c')(y)
  return keras.Model(inputs, y)


def set_log_odds(model, layer_name, values):
  """Assigns the log-odds of a gate layer (a number or one per channel)."""
  variable = model.get_layer(layer_name).log_odds
  variable.assign(np.broadcast_to(np.asarray(values, np.float32),
                                  variable.shape))


def trace(model, input_shape: Sequence[int] = None, training=False):
  """Traces `model(x, training=training)` with batch size 1."""
  if input_shape is None:
    input_shape = (1,) + tuple(model.inputs[0].shape[1:])
  return tf.compat.v1.wrap_function(
      lambda t: model(t, training=training),
      [tf.TensorSpec(input_shape, tf.float32)])


def output_ops(fn):
  """The output boundary of a traced function."""
  return [t.op for t in fn.graph.outputs]


def evaluate(fn, fetches):
  """Evaluates tensors of the traced graph with the live variable values."""
  return fn.prune(feeds=[], fetches=fetches)()
