"""Layers stay connected: a group on the only path to an output keeps
`min_channels` alive; a residual branch or an Inception tower may vanish."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.framework import constant_op_regularizer
from morph_net.framework import generic_regularizers
from morph_net.framework import minimum_alive_regularizer
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import registry
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models


def _regularizer(model, **kwargs):
  return morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=0.05,
      **kwargs)


def _kill(model, bn_names):
  surgery_models.zero_gammas(model, {name: [] for name in bn_names})


def test_connecting_groups_of_residual_and_inception_models():
  residual = channel_model.analyze(surgery_models.residual_model())
  # The stem's group runs through both adds to the output; the blocks'
  # inner convs are branches (their adds carry on without them).
  assert plan_lib.connecting_groups(residual) == [
      ['stem', 'b1_conv2'], ['b2_conv2', 'b2_proj']]
  inception = channel_model.analyze(surgery_models.inception_model())
  # Each tower may vanish (the others feed the concat); stem and head not.
  assert plan_lib.connecting_groups(inception) == [['stem'], ['head']]


def test_a_dead_chain_layer_keeps_one_channel_and_rebuilds():
  model = surgery_models.sequential_model()
  names = [l.name for l in model.layers]
  regularizer = _regularizer(model)
  full = regularizer.alive_counts()
  conv = [n for n in full if n in names][0]
  bn = names[names.index(conv) + 1]
  _kill(model, [bn])
  counts = regularizer.alive_counts()
  assert counts[conv] == 1
  assert float(regularizer.cost()) == morph_keras.StructureCost(
      regularizer).cost(counts)
  small = rebuild.rebuild(model, counts, transfer_weights=True,
                          alive_masks=regularizer.alive_vectors())
  assert small.get_layer(conv).filters == 1
  # Without the minimum the layer dies and the structure cannot be rebuilt.
  bare = _regularizer(model, min_channels=0)
  assert bare.alive_counts()[conv] == 0
  with pytest.raises(errors.StructureError, match='vanished'):
    rebuild.rebuild(model, bare.alive_counts())


def test_the_kept_channel_is_the_strongest_and_minimum_is_honoured():
  model = surgery_models.residual_model()
  gamma = np.linspace(0.01, 0.04, 8).astype('float32')  # All under 0.05.
  gamma[5] = 0.045
  for bn in ('stem_bn', 'b1_conv2_bn'):
    model.get_layer(bn).gamma.assign(gamma)
  regularizer = _regularizer(model, min_channels=2)
  alive = regularizer.alive_vectors()['stem']
  # The group's value is the max of its two gammas: channels 5 and 7 lead.
  assert np.flatnonzero(alive).tolist() == [5, 7]


def test_a_dead_residual_branch_still_vanishes():
  model = surgery_models.residual_model()
  _kill(model, ['b1_conv1_bn'])
  regularizer = _regularizer(model)
  counts = regularizer.alive_counts()
  assert counts['b1_conv1'] == 0
  small = rebuild.rebuild(model, counts)
  assert 'b1_conv1' not in [l.name for l in small.layers]
  assert float(regularizer.cost()) == morph_keras.StructureCost(
      regularizer).cost(counts)


class _Fixed(generic_regularizers.OpRegularizer):

  def __init__(self, values, threshold):
    self._values = tf.constant(values, tf.float32)
    self._alive = self._values > threshold

  @property
  def regularization_vector(self):
    return self._values

  @property
  def alive_vector(self):
    return self._alive


def test_minimum_alive_regularizer_values():
  dead = minimum_alive_regularizer.MinimumAliveRegularizer(
      _Fixed([0.0, 0.3, 0.0, 0.2], 0.5), minimum=1)
  assert dead.alive_vector.numpy().tolist() == [False, True, False, False]
  assert dead.regularization_vector.numpy().tolist() == pytest.approx(
      [0.0, 0.3, 0.0, 0.2])
  # Ties: exactly `minimum` channels, never all of them.
  zeros = minimum_alive_regularizer.MinimumAliveRegularizer(
      constant_op_regularizer.ConstantOpRegularizer(3), minimum=2)
  assert zeros.alive_vector.numpy().tolist() == [True, True, True]
  tied = minimum_alive_regularizer.MinimumAliveRegularizer(
      _Fixed([0.0, 0.0, 0.0], 0.5), minimum=2)
  assert int(np.sum(tied.alive_vector.numpy())) == 2
  enough = minimum_alive_regularizer.MinimumAliveRegularizer(
      _Fixed([0.9, 0.1, 0.8], 0.5), minimum=2)
  assert enough.alive_vector.numpy().tolist() == [True, False, True]
  larger = minimum_alive_regularizer.MinimumAliveRegularizer(
      _Fixed([0.1, 0.2], 0.5), minimum=5)
  assert larger.alive_vector.numpy().tolist() == [True, True]
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected an integer >= 1. Received: minimum=0'):
    minimum_alive_regularizer.MinimumAliveRegularizer(_Fixed([1.0], 0.5), 0)


def test_alive_threshold_and_regularization_vectors():
  model = surgery_models.residual_model()
  regularizer = _regularizer(model)
  assert regularizer.alive_threshold == 0.05
  assert registry.alive_threshold(
      flop_regularizer.GroupLassoFlopsRegularizer, {'threshold': 0.2}) == 0.2
  model.get_layer('b1_conv1_bn').gamma.assign(
      np.array([0.5, -2.0, 0, 0, 0, 1.0], 'float32'))
  values = regularizer.regularization_vectors()
  assert values['b1_conv1'].tolist() == [0.5, 2.0, 0, 0, 0, 1.0]
  assert sorted(values) == sorted(regularizer.alive_counts())


def test_alive_threshold_without_default_is_an_error():
  with pytest.raises(errors.InvalidArgumentError,
                     match='Missing argument `gamma_threshold` of '
                     'GammaFlopsRegularizer: it has no default.'):
    registry.alive_threshold(flop_regularizer.GammaFlopsRegularizer, {})
