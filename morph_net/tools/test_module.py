"""Small tf_keras (Keras 2) networks for the tests of `configurable_ops`.

The original MorphNet keeps these next to `configurable_ops` (its tests
import `morph_net.tools.test_module`). The module refers to its layers in the
three ways model code does -- through a layers module (`layers.Conv2D`),
through the keras package (`keras.layers.Conv2D`) and through module-level
aliases (`Conv2D`) -- so that `configurable_ops.hijack_keras_module` can be
tried on each. Build these inside a TF1 graph.
"""

import importlib

import tensorflow as tf

__all__ = ['keras', 'layers', 'Conv2D', 'SeparableConv2D', 'Dense',
           'BatchNormalization', 'Activation', 'build_simple_keras_model',
           'build_simple_keras_model_from_keras_lib',
           'build_simple_keras_model_from_local_aliases',
           'build_model_with_all_configurable_types', 'build_two_branch_model']

# `tf.compat.v1.keras` and its layers, as TF exports them with
# TF_USE_LEGACY_KERAS=1.
keras = importlib.import_module('tf_keras.api._v1.keras')
layers = keras.layers

Conv2D = layers.Conv2D
SeparableConv2D = layers.SeparableConv2D
Dense = layers.Dense
BatchNormalization = layers.BatchNormalization
Activation = layers.Activation


def _conv_bn_relu(x, conv, batch_norm, activation):
  """conv (10 filters, 3x3, named 'conv') -> 'bn' -> relu ('activation')."""
  x = conv(filters=10, kernel_size=3, name='conv')(x)
  x = batch_norm(name='bn')(x)
  return activation(tf.nn.relu, name='activation')(x)


def build_simple_keras_model(inputs):
  """conv -> bn -> relu through `layers.<Class>`; returns the output."""
  return _conv_bn_relu(inputs, layers.Conv2D, layers.BatchNormalization,
                       layers.Activation)


def build_simple_keras_model_from_keras_lib(inputs):
  """conv -> bn -> relu through `keras.layers.<Class>`."""
  return _conv_bn_relu(inputs, keras.layers.Conv2D,
                       keras.layers.BatchNormalization, keras.layers.Activation)


def build_simple_keras_model_from_local_aliases(inputs):
  """conv -> bn -> relu through this module's aliases (`Conv2D` ...)."""
  return _conv_bn_relu(inputs, Conv2D, BatchNormalization, Activation)


def build_model_with_all_configurable_types(inputs):
  """conv -> bn -> relu -> separable conv 'sep_conv' -> sum -> 'dense'.

  Every layer has 10 outputs; the output is [batch, 10].
  """
  x = _conv_bn_relu(inputs, Conv2D, BatchNormalization, Activation)
  x = SeparableConv2D(filters=10, kernel_size=3, name='sep_conv')(x)
  x = tf.reduce_sum(x, axis=[1, 2])
  return Dense(units=10, name='dense')(x)


def build_two_branch_model(inputs):
  """Two conv -> bn -> relu branches, their sum, and a concat of all three.

  Returns:
    (concat([branch1 + branch2, branch1, branch2]), branch1, branch2); the
    convs are 'conv1' and 'conv2' with 10 filters of 3x3 ('valid').
  """
  branches = []
  for i in (1, 2):
    x = layers.Conv2D(filters=10, kernel_size=3, name='conv%d' % i)(inputs)
    x = layers.BatchNormalization(name='bn%d' % i)(x)
    branches.append(layers.Activation(tf.nn.relu, name='activation%d' % i)(x))
  merged = layers.Add()(branches)
  concat = layers.Concatenate(axis=-1)([merged] + branches)
  return concat, branches[0], branches[1]
