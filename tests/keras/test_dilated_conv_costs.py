"""Dilated convolutions cost their layer's output positions, every kind.

Found by tests/property/test_random_models.py (a Gamma model with a dilated
Conv1D: get_cost() 388, the rebuilt model's config count 396). TensorFlow
runs a dilated 1-D convolution on SpaceToBatchND blocks, as a Conv2D
between ExpandDims and Squeeze, then BatchToSpaceND: the Conv2D's output
holds the positions of one block, and the cost read 3 of the layer's 5.
A grouped dilated conv (a function call holding the blocks and the conv)
was not costed at all. Every value here is written out by hand (2 x output positions x kernel x
inputs x outputs; 2 x rows x inputs x outputs for a Dense) and equals
`config_flops` of the model and of its rebuilt model.
"""

import keras
import numpy as np
import pytest

from morph_net.surgery import rebuild
from morph_net.testing import config_flops
from morph_net.testing import flop_regularizers

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


_group_lasso = flop_regularizers.group_lasso_flops
_gamma = flop_regularizers.gamma_flops


# (layer, input shape, hand count of the layer, of the Dense(2) after it).
_DILATED = [
    # 7 steps, 'same': 7 outputs; 2 x 7 x 2 x 3 x 4.
    (lambda: L.Conv1D(4, 2, dilation_rate=2, padding='same', name='c'),
     (7, 3), 336, 2 * 7 * 4 * 2),
    # 'causal' pads on the left: 7 outputs.
    (lambda: L.Conv1D(4, 2, dilation_rate=2, padding='causal', name='c'),
     (7, 3), 336, 2 * 7 * 4 * 2),
    # 'valid': 7 - 2 x (2 - 1) = 5 outputs.
    (lambda: L.Conv1D(4, 2, dilation_rate=2, padding='valid', name='c'),
     (7, 3), 240, 2 * 5 * 4 * 2),
    # Rate 3, kernel 3, 'valid': 9 - 6 = 3 outputs; 2 x 3 x 3 x 3 x 4.
    (lambda: L.Conv1D(4, 3, dilation_rate=3, padding='valid', name='c'),
     (9, 3), 216, 2 * 3 * 4 * 2),
    # Rate 2, kernel 3, 'same' on 8 steps (blocks of 4): 2 x 8 x 3 x 3 x 5.
    (lambda: L.Conv1D(5, 3, dilation_rate=2, padding='same', name='c'),
     (8, 3), 720, 2 * 8 * 5 * 2),
    # 2-D and 3-D: TF runs the dilation in the conv op itself.
    (lambda: L.Conv2D(4, 2, dilation_rate=2, padding='same', name='c'),
     (7, 6, 3), 2 * 42 * 4 * 3 * 4, 2 * 42 * 4 * 2),
    (lambda: L.Conv2D(4, 3, dilation_rate=(2, 1), padding='valid',
                      name='c'),
     (7, 6, 3), 2 * 12 * 9 * 3 * 4, 2 * 12 * 4 * 2),
    (lambda: L.Conv3D(2, 2, dilation_rate=2, padding='valid', name='c'),
     (5, 4, 4, 1), 2 * 12 * 8 * 1 * 2, 2 * 12 * 2 * 2),
    # Grouped (a function call whose body holds the blocks and the conv):
    # 5 outputs; 2 x 5 x 2 x (4 / 2) x 4.
    (lambda: L.Conv1D(4, 2, groups=2, dilation_rate=2, padding='valid',
                      name='c'),
     (7, 4), 160, 2 * 5 * 4 * 2),
    # Channelwise (groups = channels): 2 x 7 x 2 x 1 x 4.
    (lambda: L.Conv1D(4, 2, groups=4, dilation_rate=2, padding='same',
                      name='c'),
     (7, 4), 112, 2 * 7 * 4 * 2),
    # 5 x 4 outputs; 2 x 20 x 4 x (4 / 2) x 4.
    (lambda: L.Conv2D(4, 2, groups=2, dilation_rate=2, padding='valid',
                      name='c'),
     (7, 6, 4), 1280, 2 * 20 * 4 * 2),
    # Depthwise and separable (space-to-batch around a depthwise conv):
    # 5 outputs; depthwise 2 x 5 x 2 x 3 x 2 (multiplier), pointwise
    # 2 x 5 x 6 x 4.
    (lambda: L.DepthwiseConv1D(2, dilation_rate=2, depth_multiplier=2,
                               padding='valid', name='c'),
     (7, 3), 120, 2 * 5 * 6 * 2),
    (lambda: L.SeparableConv1D(4, 2, dilation_rate=2, depth_multiplier=2,
                               padding='valid', name='c'),
     (7, 3), 120 + 240, 2 * 5 * 4 * 2),
]


@pytest.mark.parametrize('make, shape, layer_flops, dense_flops', _DILATED)
def test_dilated_conv_costs_its_output_positions(make, shape, layer_flops,
                                                 dense_flops):
  x = keras.Input(shape)
  model = keras.Model(x, L.Dense(2, name='logits')(make()(x)))
  assert config_flops.config_flops(model) == layer_flops + dense_flops
  assert float(_group_lasso(model).cost()) == layer_flops + dense_flops


@pytest.mark.parametrize('padding, steps', [('same', 7), ('causal', 7),
                                            ('valid', 5)])
def test_dilated_conv1d_with_dead_channels_costs_its_rebuilt_model(
    padding, steps):
  x = keras.Input((7, 3))
  y = L.Conv1D(4, 2, dilation_rate=2, padding=padding, use_bias=False,
               name='c')(x)
  y = L.BatchNormalization(name='bn')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  bn = model.get_layer('bn')
  bn.gamma.assign(np.array([1.0, 0.0, 1.0, 0.0], 'float32'))
  regularizer = _gamma(model)
  # c: 2 x steps x 2 x 3 x 2 alive; logits: 2 x steps x 2 x 2.
  want = 2 * steps * 2 * 3 * 2 + 2 * steps * 2 * 2
  assert regularizer.alive_counts() == {'c': 2}
  assert float(regularizer.cost()) == want
  rebuilt = rebuild.rebuild(model, regularizer)
  assert config_flops.config_flops(rebuilt) == want


def test_the_random_model_of_the_record():
  """The failing record: a dilated 'same' Conv1D of 1 filter in a Gamma
  model (its other layers are costed right)."""
  t1 = keras.Input((5, 1), name='input0')
  t2 = keras.Input((4, 3), name='input1')
  t4 = L.Conv1D(dilation_rate=2, filters=1, groups=1, kernel_size=2,
                name='conv3', padding='same', strides=1, use_bias=False)(t1)
  t8 = L.Activation('relu', name='act7')(L.BatchNormalization(name='bn5')(
      t4))
  t10 = L.Dense(3, use_bias=False, name='branch9')(t8)
  t14 = L.Activation('softplus', name='act13')(
      L.BatchNormalization(name='bn11')(t10))
  t15 = keras.ops.concatenate([t8, t14], axis=-1)
  t17 = L.Conv1D(filters=5, kernel_size=1, name='conv16')(t15)
  t19 = L.Dense(3, use_bias=False, name='res18')(t2)
  t22 = t2 + L.BatchNormalization(name='bn20')(t19)
  t28 = L.Concatenate(name='join27')([L.Flatten(name='flatten23')(t17),
                                      L.Flatten(name='flatten25')(t22)])
  model = keras.Model([t1, t2], L.Dense(1, name='logits29')(t28))
  # conv3: 2 x 5 x 2 x 1 x 1; branch9: 2 x 5 x 1 x 3; conv16: 2 x 5 x 4 x 5;
  # res18: 2 x 4 x 3 x 3; logits29: 2 x 37.
  assert config_flops.config_flops(model) == 20 + 30 + 200 + 72 + 74 == 396
  assert float(_gamma(model).cost()) == 396
