"""Small models for the layer-level regularizer's tests, on any backend.

`residual_cnn()` is the acceptance model of the Keras 3 backends page
(docs/guides/backends.md): its FLOPs are counted by hand in the tests.
"""

import keras

__all__ = ['residual_cnn', 'RESIDUAL_CNN_FLOPS', 'RESIDUAL_CNN_TERM']

L = keras.layers

# 2 x positions x kernel x in x out per conv, 2 x in x out for the Dense:
# stem 2*64*9*3*8 + res 2*64*9*8*8 + down 2*16*9*8*6 + logits 2*6*4.
RESIDUAL_CNN_FLOPS = 27648 + 73728 + 13824 + 48
# The term at init (every gamma 1): coeff x (IN x sum(r_out) + OUT x
# sum(r_in)); stem 1152*(3*8), res 1152*(8*8+8*8), down 288*(8*6+6*8),
# logits 2*(4*6).
RESIDUAL_CNN_TERM = 27648 + 147456 + 27648 + 48


def residual_cnn(name: str = 'residual_cnn') -> keras.Model:
  """8x8x3 -> stem conv+BN -> residual conv+BN (Add) -> strided conv+BN ->
  global pooling -> Dense(4). Two channel groups: {stem, res} (8 channels,
  two batch norms) and {down} (6)."""
  x = keras.Input((8, 8, 3))
  y = L.Conv2D(8, 3, padding='same', use_bias=False, name='stem')(x)
  y = L.ReLU(name='stem_relu')(L.BatchNormalization(name='stem_bn')(y))
  r = L.Conv2D(8, 3, padding='same', use_bias=False, name='res')(y)
  r = L.BatchNormalization(name='res_bn')(r)
  y = L.ReLU(name='add_relu')(L.Add(name='add')([y, r]))
  y = L.Conv2D(6, 3, strides=2, padding='same', use_bias=False,
               name='down')(y)
  y = L.ReLU(name='down_relu')(L.BatchNormalization(name='down_bn')(y))
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(4, name='logits')(y), name=name)
