"""Small Keras 3 models and helpers to analyse them as traced graphs.

Tests build a model here, trace it with `trace`, build a network regularizer
inside `with fn.graph.as_default():` on `output_ops(fn)`, and evaluate tensors
of the traced graph with `evaluate`, which reads the live Keras variables:

    model = keras_models.residual_model()
    fn = keras_models.trace(model)
    with fn.graph.as_default():
      reg = flop_regularizer.GammaFlopsRegularizer(
          keras_models.output_ops(fn), gamma_threshold=1e-3)
      cost = reg.get_cost()
    keras_models.evaluate(fn, cost)

The builders mirror `tf1_layers` networks of the same name, so tests can check
that the TF1 graph and the Keras 3 trace give the same costs and groups.
"""

from typing import Sequence

import keras
import tensorflow as tf

__all__ = ['INPUT_SHAPE', 'conv_bn_relu', 'residual_model', 'branch_model',
           'chain_model', 'trace', 'output_ops', 'evaluate']

INPUT_SHAPE = (8, 8, 3)


def conv_bn_relu(x, filters, kernel_size=3, strides=1, name='block',
                 scale=True):
  """Conv2D (no bias) -> BatchNormalization -> ReLU, layers `<name>_conv` ..."""
  y = keras.layers.Conv2D(filters, kernel_size, strides=strides,
                          padding='same', use_bias=False,
                          name=name + '_conv')(x)
  y = keras.layers.BatchNormalization(scale=scale, name=name + '_bn')(y)
  return keras.layers.ReLU(name=name + '_relu')(y)


def residual_model(input_shape=INPUT_SHAPE, scale=True) -> keras.Model:
  """a: conv 3x3/2 (4) ; b: conv 3x3 (4) ; add(a, b) ; c: conv 1x1 (5).

  The same network as `tf1_layers`-built `residual` networks in the tests.
  """
  inputs = keras.Input(input_shape, batch_size=1, name='image')
  a = conv_bn_relu(inputs, 4, 3, 2, name='a', scale=scale)
  b = conv_bn_relu(a, 4, 3, 1, name='b', scale=scale)
  added = keras.layers.Add(name='add')([a, b])
  c = conv_bn_relu(added, 5, 1, 1, name='c', scale=scale)
  return keras.Model(inputs, c, name='residual')


def branch_model(input_shape=INPUT_SHAPE) -> keras.Model:
  """Two towers concatenated, then a depthwise conv and a dense head.

  a: conv 1x1 (2) ; b: conv 3x3 (3) ; concat -> 5 channels ;
  depthwise 3x3 (multiplier 2) -> 10 ; bn (d) ; global average ; dense (4).
  """
  inputs = keras.Input(input_shape, batch_size=1, name='image')
  a = conv_bn_relu(inputs, 2, 1, 1, name='a')
  b = conv_bn_relu(inputs, 3, 3, 1, name='b')
  concat = keras.layers.Concatenate(name='concat')([a, b])
  d = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding='same',
                                   use_bias=False, name='d_depthwise')(concat)
  d = keras.layers.BatchNormalization(name='d_bn')(d)
  d = keras.layers.ReLU(name='d_relu')(d)
  pooled = keras.layers.GlobalAveragePooling2D(name='pool')(d)
  logits = keras.layers.Dense(4, name='logits')(pooled)
  return keras.Model(inputs, logits, name='branches')


def chain_model(num_blocks, filters=4, input_shape=(4, 4, 3)) -> keras.Model:
  """`num_blocks` conv-bn-relu blocks in a row (for timing the analysis)."""
  inputs = keras.Input(input_shape, batch_size=1)
  x = inputs
  for i in range(num_blocks):
    x = conv_bn_relu(x, filters, 3, 1, name='block%d' % i)
  return keras.Model(inputs, x)


def trace(model: keras.Model, input_shape: Sequence[int] = None,
          batch_size: int = 1):
  """Traces `model(x, training=False)` into a graph function.

  Args:
    model: a built Keras model.
    input_shape: the input shape without the batch; defaults to the model's.
    batch_size: the static batch size of the trace.

  Returns:
    A `tf.compat.v1.wrap_function` function; its `graph` holds the ops.
  """
  if input_shape is None:
    input_shape = tuple(model.inputs[0].shape[1:])
  spec = tf.TensorSpec([batch_size] + list(input_shape), tf.float32)
  return tf.compat.v1.wrap_function(lambda t: model(t, training=False),
                                    [spec])


def output_ops(fn):
  """The output boundary of a traced function: its output tensors' ops."""
  return [t.op for t in fn.graph.outputs]


def evaluate(fn, fetches):
  """Evaluates tensors of the traced graph with the current variable values.

  Args:
    fn: a function returned by `trace`.
    fetches: a tensor of `fn.graph` or a (nested) structure of them.

  Returns:
    The values as numpy, in the structure of `fetches`.
  """
  result = fn.prune(feeds=[], fetches=fetches)()
  return tf.nest.map_structure(lambda t: t.numpy(), result)
