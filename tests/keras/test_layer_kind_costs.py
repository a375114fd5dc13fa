"""Costs of layer kinds that were once costed wrong, each with the right value.

Flatten then Dense, nearest upsampling, Conv1D, Dense on tokens, grouped
convolutions, a bidirectional LSTM, model outputs (which keep their width)
and group lasso at zero groups (the rows of issue 12's table). The right
value is the cost of the model the user gets, `rebuild(model,
alive_counts())`, written out by hand here (FLOPs: 2 x output positions x
kernel x inputs x outputs; 2 x inputs x outputs for a matmul) and checked
against `reference_cost` where the case is about a rebuilt model.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import flop_regularizers
from morph_net.testing import reference_cost

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _conv_bn(x, filters, name, **kwargs):
  y = L.Conv2D(filters, 3, padding='same', use_bias=False, name=name,
               **kwargs)(x)
  return L.ReLU()(L.BatchNormalization(name=name + '_bn')(y))


def _kill_gammas(model, layer, count):
  """Zeroes gamma and beta of the first `count` channels of a batch norm."""
  bn = model.get_layer(layer)
  for variable in (bn.gamma, bn.beta):
    values = variable.numpy()
    values[:count] = 0.0
    variable.assign(values)


def _gamma_flops(model):
  return flop_regularizers.gamma_flops(model, threshold=1e-6)


def _group_lasso_flops(model):
  return flop_regularizers.group_lasso_flops(model, threshold=1e-6)


def test_flatten_dense_counts_positions_times_alive_channels():
  x = keras.Input((28, 28, 1))
  y = _conv_bn(x, 16, 'conv1')
  y = _conv_bn(y, 32, 'conv2', strides=2)
  y = L.Dense(64, name='fc1')(L.Flatten()(y))
  model = keras.Model(x, L.Dense(10, name='logits')(y))
  _kill_gammas(model, 'conv1_bn', 8)
  _kill_gammas(model, 'conv2_bn', 20)
  regularizer = _gamma_flops(model)
  # conv1 2*784*9*1*8 + conv2 2*196*9*8*12 + fc1 2*(196*12)*64 + 2*64*10.
  assert float(regularizer.cost()) == 753920
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  assert reference_cost.reference_flops(rebuilt) == 753920


def test_nearest_upsampling_follows_dead_channels():
  x = keras.Input((6, 6, 3))
  y = _conv_bn(x, 16, 'enc')
  y = L.UpSampling2D(name='up')(y)
  model = keras.Model(x, L.Conv2D(8, 1, name='dec')(y))
  _kill_gammas(model, 'enc_bn', 4)
  # enc 2*36*9*3*12 + dec 2*144*12*8.
  assert float(_gamma_flops(model).cost()) == 23328 + 27648


def _conv1d_model():
  x = keras.Input((32, 2))
  y = L.Conv1D(8, 5, use_bias=False, name='c1')(x)
  y = L.BatchNormalization(name='c1_bn')(y)
  y = L.MaxPooling1D()(y)
  y = L.Conv1D(16, 3, use_bias=False, name='c2')(y)
  y = L.BatchNormalization(name='c2_bn')(y)
  y = L.Flatten()(y)
  model = keras.Model(x, L.Dense(4, name='logits')(y))
  _kill_gammas(model, 'c1_bn', 3)
  _kill_gammas(model, 'c2_bn', 6)
  return model


def test_conv1d_alive_counts_are_keyed_by_layer_name():
  model = _conv1d_model()
  counts = _gamma_flops(model).alive_counts()
  assert counts == {'c1': 5, 'c2': 10}
  rebuilt = rebuild.rebuild(model, counts)
  assert rebuilt.get_layer('c2').kernel.shape == (3, 5, 10)


def test_conv1d_cost_is_the_rebuilt_cost():
  model = _conv1d_model()
  regularizer = _gamma_flops(model)
  # c1 2*28*5*2*5 + c2 2*12*3*5*10 + logits 2*(12*10)*4.
  assert float(regularizer.cost()) == 2800 + 3600 + 960
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  assert reference_cost.reference_flops(rebuilt) == 2800 + 3600 + 960


def test_dense_on_tokens_is_costed_exactly():
  x = keras.Input((8, 6))
  model = keras.Model(x, L.Dense(16, name='d')(x))
  # No batch norm: GroupLasso; the Dense is the output, so regularizing it
  # needs keep_output_widths=False. 8 positions x 2*6*16.
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6,
      keep_output_widths=False)
  assert float(regularizer.cost()) == 8 * 2 * 6 * 16
  assert regularizer.alive_counts() == {'d': 16}
  # A hidden Dense on tokens: its rows are the 8 positions too.
  y = L.Dense(4, name='out')(L.Dense(16, name='d')(x))
  model = keras.Model(x, y)
  model.get_layer('d').kernel.assign(
      np.concatenate([np.zeros((6, 3)), np.ones((6, 13))], axis=1))
  regularizer = _group_lasso_flops(model)
  assert float(regularizer.cost()) == 8 * 2 * 6 * 13 + 8 * 2 * 13 * 4
  assert regularizer.alive_counts() == {'d': 13, 'out': 4}


def test_grouped_conv_is_costed_with_its_groups():
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c')
  y = _conv_bn(y, 16, 'g', groups=4)
  y = L.Conv2D(1, 1, use_bias=False, name='p')(y)
  y = L.BatchNormalization(name='p_bn')(y)
  y = L.GlobalAveragePooling2D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  regularizer = _gamma_flops(model)
  # c 2*64*9*3*8 + g 2*64*9*(8/4)*16 + p 2*64*16*1 + logits 2*1*2.
  assert float(regularizer.cost()) == 27648 + 36864 + 2048 + 4
  # A grouped conv keeps its input and output widths (Keras needs multiples
  # of the groups): listed whole, not regularized.
  assert regularizer.alive_counts() == {'c': 8, 'g': 16, 'p': 1}


def test_bidirectional_lstm_is_costed(caplog):
  x = keras.Input((10, 4))
  y = L.Bidirectional(L.LSTM(6), name='bilstm')(x)
  y = L.Dense(12, use_bias=False, name='fc')(y)
  y = L.BatchNormalization(name='fc_bn')(y)
  model = keras.Model(x, L.Dense(3, name='logits')(y))
  _kill_gammas(model, 'fc_bn', 2)
  with caplog.at_level(logging.WARNING):
    regularizer = _gamma_flops(model)
    # 2 directions x 2*10*4*6*(4+6) + fc 2*12*10 + logits 2*10*3.
    assert float(regularizer.cost()) == 9600 + 240 + 60
  assert regularizer.alive_counts() == {'fc': 10}
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  assert reference_cost.reference_flops(rebuilt) == 9600 + 240 + 60
  messages = ' '.join(r.getMessage() for r in caplog.records)
  for op_type in ('While', 'TensorList'):
    assert op_type not in messages


def _logits_model():
  x = keras.Input((5,))
  y = L.Dense(24, name='hidden')(x)
  model = keras.Model(x, L.Dense(10, name='logits')(y))
  for name, dead in (('hidden', [0, 1, 2, 3]), ('logits', [3])):
    kernel = model.get_layer(name).kernel
    values = kernel.numpy()
    values[:, dead] = 0.0
    kernel.assign(values)
  return model


def test_model_output_keeps_its_width():
  model = _logits_model()
  regularizer = _group_lasso_flops(model)
  # The logits are listed at their full width (a group with sources that
  # reaches the output), never regularized.
  assert regularizer.alive_counts() == {'hidden': 20, 'logits': 10}
  # hidden 2*5*20 + logits 2*20*10: the dead logits column still counts.
  assert float(regularizer.cost()) == 600
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  assert rebuilt.output.shape[-1] == 10
  assert reference_cost.reference_flops(rebuilt) == 600


def test_rebuild_refuses_to_narrow_an_output():
  with pytest.raises(errors.StructureError,
                     match=r"layers \['logits'\] cannot change \(10 -> 9\): "
                     r'their channels reach a model output'):
    rebuild.rebuild(_logits_model(), {'logits': 9})


def test_group_lasso_trains_without_nan_at_zero_groups():
  x = keras.Input((6, 6, 2))
  y = L.Conv2D(4, 3, name='conv')(x)
  y = L.GlobalAveragePooling2D()(y)
  y = L.Dense(5, kernel_initializer='zeros', name='hidden')(y)
  model = keras.Model(x, L.Dense(3, name='logits')(y))
  kernel = model.get_layer('conv').kernel
  values = kernel.numpy()
  values[..., 1] = 0.0
  kernel.assign(values)
  regularizer = _group_lasso_flops(model)
  regularizer.set_strength(1e-3)
  model.compile(optimizer=keras.optimizers.SGD(0.01),
                loss=regularizer.wrap_loss('mse'))
  data = np.random.default_rng(0).normal(size=(8, 6, 6, 2)).astype('float32')
  history = model.fit(data, np.ones((8, 3), 'float32'), epochs=3,
                      batch_size=4, verbose=0)
  assert np.all(np.isfinite(history.history['loss']))
  for weight in model.weights:
    assert np.all(np.isfinite(weight.numpy())), weight.path
  # The zero filter stays a (finite) dead channel; 'hidden' came alive.
  assert np.isfinite(float(regularizer.cost()))
  counts = regularizer.alive_counts()
  assert counts['conv'] == 3
  assert counts['hidden'] == 5
  with tf.GradientTape() as tape:
    term = regularizer.term()
  gradients = tape.gradient(term, [kernel])
  assert np.all(np.isfinite(gradients[0].numpy()))


def test_dilated_depthwise_and_separable_convs_cost_their_output_positions():
  # Found by tests/property/test_random_models.py: TF runs a depthwise conv
  # with a rate on SpaceToBatchND blocks, and the cost read the positions
  # of one block (3 of the layer's 5 below: 96 FLOPs, not 160).
  x = keras.Input((3, 7, 2))
  y = L.DepthwiseConv2D(2, dilation_rate=2, depth_multiplier=2, name='dw')(x)
  model = keras.Model(x, L.Dense(4, name='logits')(y))
  cost = float(morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=1e-3).cost())
  # dw: output 1 x 5 positions, 2 x 4 (kernel) x 2 x 2 (multiplier) x 5;
  # logits 2 x 4 x 4 x 5.
  assert cost == 160 + 160 == reference_cost.reference_flops(model)
  keras.backend.clear_session()
  x = keras.Input((5, 4))
  y = L.SeparableConv1D(4, 3, dilation_rate=2, padding='same', name='sep')(x)
  model = keras.Model(x, L.Dense(3, name='logits')(y))
  cost = float(morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=1e-3).cost())
  # sep: 5 positions, depthwise 2 x 3 x 4 x 5, pointwise 2 x 4 x 4 x 5;
  # logits 2 x 4 x 3 x 5.
  assert cost == 120 + 160 + 120 == reference_cost.reference_flops(model)
