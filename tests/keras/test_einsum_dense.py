"""EinsumDense over the last axis ('abc,cd->abd') is pruned like a Dense.

Its output channels are the kernel's columns: a group whose GroupLasso
source is the batch matmul by the 2-D kernel. Costs by hand: 2 x in x out
per position (FLOPs).
"""

import logging

import keras
import numpy as np
import pytest

from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.op_handlers import matmul_source_op_handler
from morph_net.surgery import builtin_rules
from morph_net.surgery import rebuild

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  keras.utils.set_random_seed(1)
  yield


def _group_lasso(model):
  return model_regularizer.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)


def test_einsum_dense_columns_are_pruned():
  x = keras.Input((6, 8))
  y = L.EinsumDense('abc,cd->abd', output_shape=(None, 16), bias_axes='d',
                    activation='relu', name='ed1')(x)
  y = L.EinsumDense('abc,cd->abd', output_shape=(None, 4), name='ed2')(y)
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  kernel = model.get_layer('ed1').kernel
  value = kernel.numpy()
  value[:, [0, 5, 9]] = 0.0
  kernel.assign(value)
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'ed1': 13, 'ed2': 4, 'logits': 2}
  # ed1 2*6*8*13, ed2 2*6*13*4, logits 2*4*2.
  flops = 1248 + 624 + 16
  assert float(regularizer.cost()) == flops
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  layer = rebuilt.get_layer('ed1')
  assert layer.get_config()['output_shape'] == (None, 13)
  alive = [c for c in range(16) if c not in (0, 5, 9)]
  np.testing.assert_array_equal(layer.kernel.numpy(), value[:, alive])
  assert rebuilt.get_layer('ed2').kernel.shape == (13, 4)
  data = np.random.default_rng(0).normal(size=(4, 6, 8))
  np.testing.assert_allclose(rebuilt.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == flops


@pytest.mark.parametrize('equation,supported', [
    ('abc,cd->abd', True), ('ab,bc->ac', True), ('abc,cde->abde', False),
    ('abc,dc->abd', False), ('abc,cd->adb', False)])
def test_supported_equations(equation, supported):
  layer = L.EinsumDense(equation, output_shape=(3,))
  assert builtin_rules.einsum_dense_supported(layer) == supported


def test_other_equations_keep_their_width(caplog):
  x = keras.Input((6, 8))
  y = L.Dense(8, name='proj')(x)
  y = L.EinsumDense('abc,cde->abde', output_shape=(None, 2, 4),
                    name='ed')(y)
  y = L.Reshape((6, 8))(y)
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  with caplog.at_level(logging.WARNING):
    regularizer = _group_lasso(model)
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert ("'proj': it feeds layer 'ed' (EinsumDense), whose channel handling "
          'is unknown to rebuild') in messages
  assert 'ed' not in regularizer.alive_counts()


def test_only_batch_matmuls_by_a_kernel_read_are_sources():
  x = keras.Input((6, 8))
  y = L.EinsumDense('abc,cd->abd', output_shape=(None, 8), name='ed')(x)
  y = L.MultiHeadAttention(2, 4, name='mha')(y, y)
  traced = tracing.TracedModel(keras.Model(x, y))
  handler = matmul_source_op_handler.BatchMatMulSourceOpHandler(1e-3)
  sources = sorted(op.name for op in traced.forward_ops()
                   if op.type == 'BatchMatMulV2' and handler.is_source(op))
  # The attention's projections multiply by a reshaped kernel, its
  # products two activations: none is a source.
  assert [name.split('/')[-2] for name in sources] == ['ed_1']
  assert sum(op.type == 'BatchMatMulV2' for op in traced.forward_ops()) > 1
