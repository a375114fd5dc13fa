"""Rebuilding grouped convs: whole when grouped, narrowed when channelwise."""

import keras
import numpy as np
import pytest

from morph_net.surgery import rebuild
from morph_net.testing import reference_cost
from morph_net.testing import surgery_models as tm

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _inputs(shape):
  return np.random.RandomState(0).rand(2, *shape).astype('float32')


def test_grouped_conv_keeps_its_weights_when_the_rest_narrows():
  model = tm.grouped_conv_model(head='flatten')
  same = rebuild.rebuild(model, {}, transfer_weights=True)
  np.testing.assert_allclose(model(_inputs((6, 6, 3))),
                             same(_inputs((6, 6, 3))), atol=1e-6)
  narrow = rebuild.rebuild(model, {'p': 3}, transfer_weights=True)
  np.testing.assert_array_equal(model.get_layer('g').kernel.numpy(),
                                narrow.get_layer('g').kernel.numpy())
  assert narrow.get_layer('p').filters == 3
  # c 2*36*3*8 + g 2*16*9*(8/4)*12 + p 2*16*12*3 + logits 2*(16*3)*2.
  assert reference_cost.reference_flops(narrow) == 1728 + 6912 + 1152 + 192


def test_channelwise_conv_is_narrowed_with_its_input():
  x = keras.Input((6, 6, 3))
  y = L.Conv2D(8, 1, use_bias=False, name='c')(x)
  y = L.BatchNormalization(name='c_bn')(y)
  y = L.Conv2D(8, 3, groups=8, padding='same', name='cw')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  tm.randomize_batch_norms(model)
  dead = [1, 4, 6]
  bn = model.get_layer('c_bn')
  for weight in (bn.gamma, bn.beta):
    values = weight.numpy()
    values[dead] = 0.0
    weight.assign(values)
  # The channelwise conv's kernel and bias of the dead channels are zero too,
  # so the narrowed model computes the same function.
  cw = model.get_layer('cw')
  for weight in (cw.kernel, cw.bias):
    values = weight.numpy()
    values[..., dead] = 0.0
    weight.assign(values)
  narrow = rebuild.rebuild(model, {'c': 5, 'cw': 5}, transfer_weights=True)
  layer = narrow.get_layer('cw')
  assert (layer.filters, layer.groups) == (5, 5)
  np.testing.assert_array_equal(
      np.delete(cw.kernel.numpy(), dead, axis=-1), layer.kernel.numpy())
  np.testing.assert_allclose(model(_inputs((6, 6, 3))),
                             narrow(_inputs((6, 6, 3))), atol=1e-5)
  # c 2*36*3*5 + cw 2*36*9*5 (per channel) + logits 2*5*2.
  assert reference_cost.reference_flops(narrow) == 1080 + 3240 + 20


def test_grouped_conv1d_is_costed():
  # Found by tests/property/test_random_models.py: Keras 3 runs a grouped
  # Conv1D as a function call whose body is ExpandDims -> Conv2D ->
  # Squeeze, which the cost did not read (its FLOPs were left out, with a
  # warning "is not costed").
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.framework import function_calls  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  x = keras.Input((2, 1))
  y = L.Conv1D(4, 2, padding='same', use_bias=False, name='c0')(x)
  y = L.Conv1D(4, 1, groups=2, use_bias=False, name='g')(y)
  model = keras.Model(x, L.Dense(3, name='d')(y))
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  # c0 2*2*(2*1)*4, g 2*2*1*(4/2)*4, d 2*2*4*3.
  assert float(regularizer.cost()) == 32 + 32 + 48 == 112
  call = [op for op in regularizer.traced.graph.get_operations()
          if op.type in function_calls.CALL_OP_TYPES][0]
  called = function_calls.called_op(call)
  assert called.op.type == 'Conv2D'
  assert called.activation.shape.as_list() == [None, 2, 4]
  assert called.output is call.outputs[0]
  assert reference_cost.reference_flops(model) == 112
