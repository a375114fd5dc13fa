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


# ------------------------------------ sets of groups cutting an output together.


def _two_branch_model():
  """Two Dense branches of the input, concatenated: the only path to the
  logits. Either branch may vanish, not both."""
  x = keras.Input((3,), name='x')
  a = keras.layers.Dense(4, name='a')(x)
  b = keras.layers.Dense(5, name='b')(x)
  c = keras.layers.Concatenate(name='cat')([a, b])
  return keras.Model(x, keras.layers.Dense(2, name='logits')(c))


def test_connecting_sets_of_parallel_branches():
  inception = channel_model.analyze(surgery_models.inception_model())
  # Every tower together (tower 2 through either of its convs) cuts the
  # concat, the only path to the head; no tower alone does.
  assert plan_lib.connecting_sets(inception) == [
      [['tower2_reduce'], ['tower3_proj'], ['tower1_conv']],
      [['tower3_proj'], ['tower2_conv'], ['tower1_conv']]]
  assert plan_lib.connecting_sets(
      channel_model.analyze(_two_branch_model())) == [[['a'], ['b']]]
  # The residual model's branches have their skip connections.
  assert plan_lib.connecting_sets(
      channel_model.analyze(surgery_models.residual_model())) == []


def test_keep_sets_alive_values():
  a = _Fixed([0.1, 0.0, 0.2], 0.5)
  b = _Fixed([0.3, 0.05], 0.5)
  c = _Fixed([0.9, 0.0], 0.5)
  kept = minimum_alive_regularizer.keep_sets_alive([[a, b], [b, c]])
  # {a, b} is all dead: b holds the largest value (0.3), keeps channel 0;
  # {b, c} has c alive. Regularization vectors are unchanged.
  assert kept[id(a)].alive_vector.numpy().tolist() == [False] * 3
  assert kept[id(b)].alive_vector.numpy().tolist() == [True, False]
  assert kept[id(c)].alive_vector.numpy().tolist() == [True, False]
  assert kept[id(b)].regularization_vector.numpy().tolist() == (
      pytest.approx([0.3, 0.05]))
  # A tie goes to the first regularizer of the set.
  x, y = _Fixed([0.2, 0.0], 0.5), _Fixed([0.0, 0.2], 0.5)
  tied = minimum_alive_regularizer.keep_sets_alive([[y, x]])
  assert tied[id(y)].alive_vector.numpy().tolist() == [False, True]
  assert tied[id(x)].alive_vector.numpy().tolist() == [False, False]
  # `minimum` channels of the strongest, at most its size.
  first = _Fixed([0.3, 0.1, 0.3], 0.5)
  two = minimum_alive_regularizer.keep_sets_alive([[first, b]], minimum=2)
  assert two[id(first)].alive_vector.numpy().tolist() == [True, False, True]
  assert two[id(b)].alive_vector.numpy().tolist() == [False, False]
  small = minimum_alive_regularizer.keep_sets_alive([[b, a]], minimum=5)
  assert small[id(b)].alive_vector.numpy().tolist() == [True, True]
  assert small[id(a)].alive_vector.numpy().tolist() == [False] * 3
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'keep_sets_alive. Expected an integer >= 1. '
                     r'Received: minimum=0'):
    minimum_alive_regularizer.keep_sets_alive([[a]], minimum=0)


def _towers_under_threshold(model):
  """Every tower's gammas under the 0.05 threshold; tower3_proj has the
  largest (0.04 on channel 1, 0.03 on channel 2)."""
  for name, values in (('tower1_conv_bn', [0.01, 0.02, 0.0, 0.01]),
                       ('tower2_reduce_bn', [0.02] * 6),
                       ('tower2_conv_bn', [0.0, 0.0, 0.0, 0.0, 0.035]),
                       ('tower3_proj_bn', [0.0, 0.04, 0.03])):
    model.get_layer(name).gamma.assign(np.array(values, 'float32'))


def test_all_towers_dead_the_strongest_keeps_one_channel_and_rebuilds():
  model = surgery_models.inception_model()
  regularizer = _regularizer(model)
  assert regularizer.connecting_sets == [
      [['tower2_reduce'], ['tower3_proj'], ['tower1_conv']],
      [['tower3_proj'], ['tower2_conv'], ['tower1_conv']]]
  _towers_under_threshold(model)
  counts = regularizer.alive_counts()
  assert {n: counts[n] for n in ('stem', 'tower1_conv', 'tower2_reduce',
                                 'tower2_conv', 'tower3_proj', 'head')} == {
                                     'stem': 8, 'tower1_conv': 0,
                                     'tower2_reduce': 0, 'tower2_conv': 0,
                                     'tower3_proj': 1, 'head': 10}
  assert np.flatnonzero(
      regularizer.alive_vectors()['tower3_proj']).tolist() == [1]
  cost = float(regularizer.cost())
  assert cost == morph_keras.StructureCost(regularizer).cost(counts)
  small = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert small.get_layer('tower3_proj').filters == 1
  assert not {'tower1_conv', 'tower2_reduce', 'tower2_conv'} & {
      l.name for l in small.layers}
  assert float(_regularizer(small).cost()) == cost
  # min_channels=2: the two strongest channels of the strongest tower.
  two = _regularizer(model, min_channels=2)
  assert np.flatnonzero(two.alive_vectors()['tower3_proj']).tolist() == [
      1, 2]
  # Without a minimum every tower dies and the structure is refused.
  bare = _regularizer(model, min_channels=0)
  assert bare.connecting_sets == []
  assert bare.alive_counts()['tower3_proj'] == 0
  with pytest.raises(errors.StructureError, match='vanished'):
    rebuild.rebuild(model, bare.alive_counts())


def test_one_dead_tower_vanishes_alone():
  model = surgery_models.inception_model()
  _kill(model, ['tower1_conv_bn'])
  counts = _regularizer(model).alive_counts()
  assert (counts['tower1_conv'], counts['tower2_conv'],
          counts['tower3_proj']) == (0, 5, 3)


def test_parallel_dense_branches_under_group_lasso():
  model = _two_branch_model()
  a, b = model.get_layer('a'), model.get_layer('b')
  a.kernel.assign(np.zeros((3, 4), 'float32'))
  a.bias.assign(np.zeros(4, 'float32'))
  kernel = np.zeros((3, 5), 'float32')
  kernel[:, 3] = 1e-4  # Channel 3 of b is the strongest, under 1e-3.
  b.kernel.assign(kernel)
  b.bias.assign(np.zeros(5, 'float32'))
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  assert regularizer.alive_counts() == {'a': 0, 'b': 1, 'logits': 2}
  assert np.flatnonzero(regularizer.alive_vectors()['b']).tolist() == [3]
  # b (1 unit from 3 inputs) and logits (2 from 1): 2 x 3 + 2 x 2.
  assert float(regularizer.cost()) == 10.0
  assert morph_keras.StructureCost(regularizer).cost(
      regularizer.alive_counts()) == 10.0
  small = rebuild.rebuild(model, regularizer, transfer_weights=True)
  data = np.random.default_rng(0).normal(size=(4, 3)).astype('float32')
  np.testing.assert_allclose(small(data), model(data), rtol=1e-6, atol=1e-6)


def test_lead_cost_keeps_one_group_of_a_connecting_set():
  model = surgery_models.inception_model()
  regularizer = _regularizer(model)
  callback = morph_keras.CostTargetCallback(
      regularizer, 0.5 * regularizer.initial_cost, lead_steps=10,
      smoothing=1.0)
  callback._observe(1)  # pylint: disable=protected-access
  # Every tower's values fall (by 0.96 per step to the largest 0.04):
  # all would die; the lead keeps the strongest tower's floor.
  _towers_under_threshold(model)
  callback._observe(1)  # pylint: disable=protected-access
  full = {n: 0 for n in ('tower1_conv', 'tower2_reduce', 'tower2_conv')}
  full.update(stem=8, tower3_proj=1, head=10, logits=5)
  assert callback.lead_cost() == morph_keras.StructureCost(regularizer).cost(
      {n: w for n, w in full.items()
       if n in regularizer.alive_counts()})
