"""A small model running every op kind MobileNets run, and a fixed profile.

`padded_mobile_model` has a strided conv, batch norms, ReLU6, zero padding,
a depthwise conv, a residual add, global average pooling and a dense layer:
the op kinds conv, depthwise, mul, add, activation, pad, reduce, matmul and
bias_add. `fixed_profile` gives every op kind distinct, made-up parameters,
so tests can check costs exactly without timing anything.
"""

import keras

from morph_net.network_regularizers import latency_profile

__all__ = ['padded_mobile_model', 'fixed_profile']

L = keras.layers


def padded_mobile_model(input_shape=(16, 16, 3), classes=4,
                        name='padded_mobile'):
  """stem (stride 2) -> pad -> depthwise -> project (+ stem) -> dense."""
  x = keras.Input(input_shape, name='image')
  stem = L.Conv2D(8, 3, strides=2, padding='same', use_bias=False,
                  name='stem')(x)
  stem = L.BatchNormalization(name='stem_bn')(stem)
  stem = L.ReLU(6.0, name='stem_relu')(stem)
  y = L.ZeroPadding2D(1, name='pad')(stem)
  y = L.DepthwiseConv2D(3, use_bias=False, name='dw')(y)
  y = L.BatchNormalization(name='dw_bn')(y)
  y = L.ReLU(6.0, name='dw_relu')(y)
  y = L.Conv2D(8, 1, use_bias=False, name='project')(y)
  y = L.BatchNormalization(name='project_bn')(y)
  y = L.Add(name='add')([stem, y])
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(classes, name='logits')(y), name=name)


def fixed_profile(batch_size: int = 1) -> latency_profile.LatencyProfile:
  """Every op kind with parameters (k + 1) x (0.01, 0.1, 100), k its index."""
  kinds = {}
  for index, kind in enumerate(latency_profile.OP_KINDS):
    factor = index + 1.0
    kinds[kind] = latency_profile.KindParameters(
        0.01 * factor, 0.1 * factor, 100.0 * factor)
  return latency_profile.LatencyProfile(kinds, batch_size, 'made up')
