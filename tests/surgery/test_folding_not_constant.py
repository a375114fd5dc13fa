"""Removed channels that are not constant in the model: a folding report.

Found by tests/property/test_random_models.py (the 520-model survey, seed
606): under a Gamma regularizer, `ops.maximum(bn, branch)` of a batch norm
and a bias-free Dense reading it ties their channels in one group, which
dies by the batch norm's gamma alone. The Dense has no batch norm, so its
removed channel is not constant in the model (it varies with the live
channels it reads) and the merge passes it on; the probe of folding
zeroed its kernel column, folded nothing, and the rebuilt outputs were off
by up to 0.68 with no report. No folded constant can make up for a
varying channel: folding now compares the model's outputs with the
probe's and names the layers reading such channels.
"""

import logging

import keras
import numpy as np
import pytest

from morph_net.surgery import rebuild
from morph_net.testing import flop_regularizers

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _model(merge, beta=0.0):
  """x -> d (2) -> bn -> branch (2, no bias); merge(bn, branch) -> logits.

  d copies x to both channels, bn passes channel 0 and outputs `beta` on
  channel 1 (gamma 0), branch computes (x, 2 x), logits sums its two
  inputs.
  """
  x = keras.Input((1,), name='x')
  y = L.Dense(2, name='d')(x)
  y = L.BatchNormalization(epsilon=0.001, name='bn')(y)
  b = L.Dense(2, use_bias=False, name='branch')(y)
  m = getattr(keras.ops, merge)(y, b)
  model = keras.Model(x, L.Dense(1, name='logits')(m))
  model.get_layer('d').set_weights([np.array([[1.0, 1.0]]), np.zeros(2)])
  model.get_layer('bn').set_weights([
      np.array([1.0, 0.0]), np.array([0.0, beta]), np.zeros(2),
      np.full(2, 0.999)])
  model.get_layer('branch').set_weights([np.array([[1.0, 2.0],
                                                   [0.0, 0.0]])])
  model.get_layer('logits').set_weights([np.ones((2, 1)), np.zeros(1)])
  return model


_DATA = np.array([[1.0], [-2.0], [0.5]], 'float32')


def _rebuild(model, regularizer, caplog):
  with caplog.at_level(logging.WARNING, logger='absl'):
    rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  messages = [r.getMessage() for r in caplog.records
              if 'not constant' in r.getMessage()]
  return rebuilt, messages


@pytest.mark.parametrize('merge, model_out, rebuilt_out', [
    # bn = (x, 0), branch = (x, 2x).
    ('add', [4.0, -8.0, 2.0], [2.0, -4.0, 1.0]),
    ('maximum', [3.0, -2.0, 1.5], [1.0, -2.0, 0.5]),
    ('subtract', [-2.0, 4.0, -1.0], [0.0, 0.0, 0.0]),
])
def test_a_gamma_group_merged_with_a_layer_without_batch_norm(
    merge, model_out, rebuilt_out, caplog):
  model = _model(merge)
  regularizer = flop_regularizers.gamma_flops(model)
  assert regularizer.alive_counts() == {'d': 1, 'branch': 1}
  rebuilt, messages = _rebuild(model, regularizer, caplog)
  np.testing.assert_allclose(model(_DATA)[:, 0], model_out, rtol=1e-6)
  np.testing.assert_allclose(rebuilt(_DATA)[:, 0], rebuilt_out, rtol=1e-6,
                             atol=1e-6)
  # Folding's random sample is x = 0.1257 (default_rng(0)): the model's
  # merged channel 1 is 2x (add, maximum) or -2x (subtract) there, the
  # probe's 0.
  assert messages == [
      "Removed channels are not constant in 'functional': the rebuilt "
      'outputs are not exact for 1 layers reading them, which no folded '
      'constant makes up for (a layer without batch norm summed with, '
      'multiplied by or the maximum of a dead channel under a Gamma '
      'regularizer, a batch-norm gamma not at 0, or widths below the alive '
      "counts). Largest differences from the regularized model: 'logits' "
      '(Dense) 0.251. Fine-tune the rebuilt model.']


def test_a_product_with_a_dead_zero_channel_is_exact(caplog):
  # bn's channel 1 is 0: the product's channel 1 is 0 whatever branch.
  model = _model('multiply')
  regularizer = flop_regularizers.gamma_flops(model)
  rebuilt, messages = _rebuild(model, regularizer, caplog)
  np.testing.assert_allclose(rebuilt(_DATA), model(_DATA), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(model(_DATA)[:, 0], [1.0, 4.0, 0.25],
                             rtol=1e-6)
  assert not messages


def test_a_product_with_a_dead_constant_channel_is_reported(caplog):
  # bn's channel 1 is beta = 0.5: the product's channel 1 is x.
  model = _model('multiply', beta=0.5)
  regularizer = flop_regularizers.gamma_flops(model)
  _, messages = _rebuild(model, regularizer, caplog)
  assert len(messages) == 1
  assert ("Largest differences from the regularized model: 'logits' "
          '(Dense) 0.126.') in messages[0]


def test_group_lasso_kills_the_branch_too_and_is_exact(caplog):
  # Under GroupLasso the group's kernel columns are regularized together:
  # with d's and branch's columns 1 at 0 the merged channel 1 is bn's
  # constant (beta) plus 0, which folds into logits' bias.
  model = _model('add', beta=0.5)
  for name in ('d', 'branch'):
    kernel = model.get_layer(name).kernel.numpy()
    kernel[:, 1] = 0.0
    model.get_layer(name).kernel.assign(kernel)
  regularizer = flop_regularizers.group_lasso_flops(model)
  assert regularizer.alive_counts() == {'d': 1, 'branch': 1, 'logits': 1}
  rebuilt, messages = _rebuild(model, regularizer, caplog)
  np.testing.assert_allclose(rebuilt(_DATA), model(_DATA), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(rebuilt.get_layer('logits').bias.numpy(),
                             [0.5], rtol=1e-6)
  assert not messages
