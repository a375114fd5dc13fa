"""Keeping a network connected through depthwise convs with a multiplier.

The graph engine cuts the group feeding a depthwise conv with a depth
multiplier m > 1 into one op group per channel (input channel i with
output channels i * m ... i * m + m - 1, as the original's
DepthwiseConvolutionOpHandler). `min_channels` is counted on the whole
group of layers (`keep_group_alive`), not once per op group: a dead chain
keeps one channel, not every channel. FLOPs below: 4 x 4 positions, a
multiply-add counts 2; conv 2 x 16 x k^2 x in x out, depthwise
2 x 16 x k^2 x out, dense 2 x in x out (batch norms cost nothing).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.framework import minimum_alive_regularizer
from morph_net.keras import layer_regularizer
from morph_net.network_regularizers import flop_regularizer
from morph_net.op_regularizers import gamma_l1_regularizer
from morph_net.surgery import rebuild

L = keras.layers
_THRESHOLD = 0.05


def _conv_bn(y, filters, name, kernel_size=1, conv=L.Conv2D, **kwargs):
  y = conv(filters, kernel_size, padding='same', use_bias=False, name=name,
           **kwargs)(y)
  return L.ReLU()(L.BatchNormalization(name=name + '_bn')(y))


def _chain(multiplier, pointwise, rank=2):
  """conv c (4) -> depthwise dw (multiplier) -> [conv pw (5)] -> logits."""
  shape = (4, 4, 3) if rank == 2 else (16, 3)
  conv = L.Conv2D if rank == 2 else L.Conv1D
  depthwise = L.DepthwiseConv2D if rank == 2 else L.DepthwiseConv1D
  pool = (L.GlobalAveragePooling2D if rank == 2 else
          L.GlobalAveragePooling1D)
  x = keras.Input(shape)
  y = _conv_bn(x, 4, 'c', kernel_size=3, conv=conv)
  y = depthwise(3, depth_multiplier=multiplier, padding='same',
                use_bias=False, name='dw')(y)
  y = L.ReLU()(L.BatchNormalization(name='dw_bn')(y))
  if pointwise:
    y = _conv_bn(y, 5, 'pw', conv=conv)
  return keras.Model(x, L.Dense(2, name='logits')(pool()(y)))


def _separable(multiplier, rank=2):
  """conv c (4) -> separable sep (5, multiplier) -> logits."""
  shape = (4, 4, 3) if rank == 2 else (16, 3)
  conv = L.Conv2D if rank == 2 else L.Conv1D
  separable = L.SeparableConv2D if rank == 2 else L.SeparableConv1D
  pool = (L.GlobalAveragePooling2D if rank == 2 else
          L.GlobalAveragePooling1D)
  x = keras.Input(shape)
  y = _conv_bn(x, 4, 'c', kernel_size=3, conv=conv)
  y = _conv_bn(y, 5, 'sep', kernel_size=3, conv=separable,
               depth_multiplier=multiplier)
  return keras.Model(x, L.Dense(2, name='logits')(pool()(y)))


def _residual(multiplier):
  """c (4) + inverted residual block (expand 6, depthwise, proj 4), then a
  depthwise conv dw2 (multiplier) on the sum, then logits."""
  x = keras.Input((4, 4, 3))
  y = _conv_bn(x, 4, 'c', kernel_size=3)
  e = _conv_bn(y, 6, 'expand')
  d = L.DepthwiseConv2D(3, depth_multiplier=multiplier, padding='same',
                        use_bias=False, name='dw')(e)
  d = L.ReLU()(L.BatchNormalization(name='dw_bn')(d))
  p = L.BatchNormalization(name='proj_bn')(
      L.Conv2D(4, 1, use_bias=False, name='proj')(d))
  y = L.Add(name='add')([y, p])
  y = L.DepthwiseConv2D(3, depth_multiplier=multiplier, padding='same',
                        use_bias=False, name='dw2')(y)
  y = L.BatchNormalization(name='dw2_bn')(y)
  return keras.Model(
      x, L.Dense(2, name='logits')(L.GlobalAveragePooling2D()(y)))


def _set_gammas(model, values=None):
  """Every batch norm's gammas to 0, or to values[name]."""
  values = values or {}
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      layer.gamma.assign(np.asarray(
          values.get(layer.name, np.zeros(layer.gamma.shape)), 'float32'))


def _engines(model, min_channels=1):
  graph = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD, min_channels=min_channels)
  layer = layer_regularizer.LayerRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD, min_channels=min_channels)
  return graph, layer


def _check_rebuilds(model, graph, cost, min_channels=1):
  """The structure rebuilds; its cost is `cost`, as predicted."""
  counts = graph.alive_counts()
  assert float(graph.cost()) == cost
  assert morph_keras.StructureCost(graph).cost(counts) == cost
  small = rebuild.rebuild(model, graph, transfer_weights=True)
  again = morph_keras.ModelRegularizer(
      small, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD, min_channels=min_channels)
  assert float(again.cost()) == cost
  return small


# c: 2*16*9*3*1 = 864; dw: 2*16*9*m = 288m; pw: 2*16*m*1 = 32m;
# logits: 2*1*2 = 4 after pw, 2*m*2 = 4m without.
@pytest.mark.parametrize('multiplier, pointwise, cost', [
    (1, True, 1188.0), (2, True, 1508.0), (3, True, 1828.0),
    (1, False, 1156.0), (2, False, 1448.0), (3, False, 1740.0)])
def test_a_dead_chain_keeps_one_channel_through_a_depthwise_multiplier(
    multiplier, pointwise, cost):
  keras.backend.clear_session()
  model = _chain(multiplier, pointwise)
  graph, layer = _engines(model)
  assert graph.connecting_layers == (['c', 'pw'] if pointwise else ['c'])
  _set_gammas(model)
  want = {'c': 1}
  if pointwise:
    want['pw'] = 1
  assert graph.alive_counts() == layer.alive_counts() == want
  assert float(layer.cost()) == cost
  small = _check_rebuilds(model, graph, cost)
  assert small.get_layer('c').filters == 1
  assert small.get_layer('dw').depth_multiplier == multiplier


@pytest.mark.parametrize('multiplier', [1, 2, 3])
def test_the_kept_channel_is_the_strongest_of_the_whole_group(multiplier):
  keras.backend.clear_session()
  model = _chain(multiplier, pointwise=True)
  graph, layer = _engines(model)
  # Channel 1 leads c_bn; channel 2's last depthwise copy leads dw_bn.
  dw_bn = np.zeros(4 * multiplier)
  dw_bn[3 * multiplier - 1] = 0.04
  _set_gammas(model, {'c_bn': [0.01, 0.03, 0.02, 0.0], 'dw_bn': dw_bn})
  assert np.flatnonzero(graph.alive_vectors()['c']).tolist() == [2]
  assert graph.alive_counts()['c'] == layer.alive_counts()['c'] == 1
  # min_channels=2: channels 2 and 1, counted on the group's channels.
  two, two_layers = _engines(model, min_channels=2)
  assert np.flatnonzero(two.alive_vectors()['c']).tolist() == [1, 2]
  assert two.alive_counts() == two_layers.alive_counts() == {
      'c': 2, 'pw': 2}
  # c: 864 * 2; dw: 288m * 2; pw: 32 * 2m * 2; logits: 2 * 2 * 2.
  cost = 1728.0 + 576.0 * multiplier + 128.0 * multiplier + 8.0
  assert float(two.cost()) == float(two_layers.cost()) == cost
  _check_rebuilds(model, two, cost, min_channels=2)


@pytest.mark.parametrize('multiplier', [1, 2, 3])
def test_one_alive_channel_is_enough(multiplier):
  keras.backend.clear_session()
  model = _chain(multiplier, pointwise=False)
  graph, layer = _engines(model)
  _set_gammas(model, {'c_bn': [0.0, 0.0, 0.0, 0.5]})
  assert np.flatnonzero(graph.alive_vectors()['c']).tolist() == [3]
  assert graph.alive_counts() == layer.alive_counts() == {'c': 1}
  # Two alive channels: nothing is added.
  _set_gammas(model, {'c_bn': [0.5, 0.0, 0.0, 0.5]})
  assert graph.alive_counts() == layer.alive_counts() == {'c': 2}


# c: 864 x c; sep's depthwise: 2*16*9*m*c = 288mc; its pointwise:
# 2*16*m*c*1 = 32mc; logits 2*1*2 = 4.
@pytest.mark.parametrize('multiplier, rank, cost', [
    (1, 2, 1188.0), (2, 2, 1508.0), (3, 2, 1828.0),
    # Conv1D on 16 positions: c 2*16*3*3 = 288; sep 2*16*3*m = 96m;
    # pointwise 32m; logits 4.
    (1, 1, 420.0), (2, 1, 548.0), (3, 1, 676.0)])
def test_a_dead_separable_chain_keeps_one_channel(multiplier, rank, cost):
  keras.backend.clear_session()
  model = _separable(multiplier, rank)
  graph, layer = _engines(model)
  assert graph.connecting_layers == ['c', 'sep']
  _set_gammas(model)
  assert graph.alive_counts() == layer.alive_counts() == {
      'c': 1, 'sep': 1}
  assert float(layer.cost()) == cost
  small = _check_rebuilds(model, graph, cost)
  assert small.get_layer('sep').depth_multiplier == multiplier


# c: 2*16*3*3*1 = 288; dw: 2*16*3*m = 96m; logits: 2*m*2 = 4m.
@pytest.mark.parametrize('multiplier, cost', [
    (1, 388.0), (2, 488.0), (3, 588.0)])
def test_a_dead_depthwise_1d_chain_keeps_one_channel(multiplier, cost):
  keras.backend.clear_session()
  model = _chain(multiplier, pointwise=False, rank=1)
  graph, layer = _engines(model)
  _set_gammas(model)
  assert graph.alive_counts() == layer.alive_counts() == {'c': 1}
  assert float(layer.cost()) == cost
  _check_rebuilds(model, graph, cost)


@pytest.mark.parametrize('multiplier', [1, 2, 3])
def test_a_residual_add_before_a_depthwise_multiplier(multiplier):
  keras.backend.clear_session()
  model = _residual(multiplier)
  graph, layer = _engines(model)
  # The sum's group (c and proj) is on the only path; the block's expand
  # is a branch (the add carries on without it).
  assert graph.connecting_layers == ['c', 'proj']
  _set_gammas(model)
  assert graph.alive_counts() == layer.alive_counts() == {
      'c': 1, 'expand': 0, 'proj': 1}
  # c: 864; the block vanishes; dw2: 288m; logits: 2*m*2.
  cost = 864.0 + 292.0 * multiplier
  assert float(layer.cost()) == cost
  small = _check_rebuilds(model, graph, cost)
  assert not {'expand', 'dw', 'proj'} & {l.name for l in small.layers}
  # The block alive (expand's channel 4): c and proj keep one channel.
  expand_bn = np.zeros(6)
  expand_bn[4] = 0.5
  _set_gammas(model, {'expand_bn': expand_bn})
  assert graph.alive_counts() == layer.alive_counts() == {
      'c': 1, 'expand': 1, 'proj': 1}
  # + expand 2*16*1*1 = 32, dw 288m, proj 2*16*m*1 = 32m.
  cost += 32.0 + 320.0 * multiplier
  assert float(layer.cost()) == cost
  _check_rebuilds(model, graph, cost)


def _concatenated_branches(multiplier):
  """stem (4); branch a (3) -> depthwise dwa (multiplier); branch b (4);
  concatenated: either branch may vanish, not both."""
  x = keras.Input((4, 4, 3))
  y = _conv_bn(x, 4, 'stem', kernel_size=3)
  a = _conv_bn(y, 3, 'a')
  a = L.DepthwiseConv2D(3, depth_multiplier=multiplier, padding='same',
                        use_bias=False, name='dwa')(a)
  a = L.BatchNormalization(name='dwa_bn')(a)
  b = _conv_bn(y, 4, 'b')
  y = L.Concatenate(name='cat')([a, b])
  return keras.Model(
      x, L.Dense(2, name='logits')(L.GlobalAveragePooling2D()(y)))


# stem: 2*16*9*3*s = 864s; a: 2*16*s*k = 32sk; dwa: 2*16*9*m*k = 288mk;
# logits: 2*(m*k)*2 (b dead).
@pytest.mark.parametrize('multiplier, minimum, cost', [
    (1, 1, 864.0 + 32.0 + 288.0 + 4.0),
    (2, 1, 864.0 + 32.0 + 576.0 + 8.0),
    (2, 2, 1728.0 + 128.0 + 1152.0 + 16.0),
    (3, 2, 1728.0 + 128.0 + 1728.0 + 24.0)])
def test_a_set_of_branches_keeps_min_channels_of_the_sliced_branch(
    multiplier, minimum, cost):
  keras.backend.clear_session()
  model = _concatenated_branches(multiplier)
  graph, _ = _engines(model, min_channels=minimum)
  assert graph.connecting_sets == [[['a'], ['b']]]
  # Every channel under the threshold; a (cut into one op group per
  # channel when multiplier > 1) holds the largest value.
  _set_gammas(model, {'a_bn': [0.01, 0.02, 0.03],
                      'b_bn': [0.01, 0.0, 0.0, 0.0]})
  assert graph.alive_counts() == {'stem': minimum, 'a': minimum, 'b': 0}
  assert np.flatnonzero(graph.alive_vectors()['a']).tolist() == (
      [2] if minimum == 1 else [1, 2])
  small = _check_rebuilds(model, graph, cost, min_channels=minimum)
  assert 'b' not in {l.name for l in small.layers}


# ------------------------------------------------ the framework functions.


def _fixed(values):
  """A regularizer of `values`, alive above 0.5."""
  return gamma_l1_regularizer.GammaL1Regularizer(
      tf.constant(values, tf.float32), 0.5)


def _alive(kept, regularizer):
  return kept[id(regularizer)].alive_vector.numpy().tolist()


def test_keep_group_alive_counts_whole_channels():
  a, b, c = _fixed([0.1]), _fixed([0.3]), _fixed([0.2, 0.0])
  kept = minimum_alive_regularizer.keep_group_alive([a, b, c])
  assert (_alive(kept, a), _alive(kept, b), _alive(kept, c)) == (
      [False], [True], [False, False])
  two = minimum_alive_regularizer.keep_group_alive([a, b, c, b], minimum=2)
  assert sorted(two) == sorted([id(a), id(b), id(c)])
  assert (_alive(two, a), _alive(two, b), _alive(two, c)) == (
      [False], [True], [True, False])
  assert two[id(c)].regularization_vector.numpy().tolist() == (
      pytest.approx([0.2, 0.0]))
  # Enough alive: unchanged.
  alive = _fixed([0.9])
  enough = minimum_alive_regularizer.keep_group_alive([a, alive])
  assert (_alive(enough, a), _alive(enough, alive)) == ([False], [True])
  # Ties go to the first channel; a large minimum keeps every channel.
  x, y = _fixed([0.0]), _fixed([0.0])
  tied = minimum_alive_regularizer.keep_group_alive([x, y])
  assert (_alive(tied, x), _alive(tied, y)) == ([True], [False])
  every = minimum_alive_regularizer.keep_group_alive([x, c], minimum=9)
  assert (_alive(every, x), _alive(every, c)) == ([True], [True, True])
  # One regularizer: a MinimumAliveRegularizer.
  single = minimum_alive_regularizer.keep_group_alive([c])
  assert isinstance(single[id(c)],
                    minimum_alive_regularizer.MinimumAliveRegularizer)
  assert _alive(single, c) == [True, False]


def test_keep_group_alive_errors():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'argument `minimum` of keep_group_alive. '
                     r'Expected an integer >= 1. Received: minimum=0'):
    minimum_alive_regularizer.keep_group_alive([_fixed([1.0])], minimum=0)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'argument `regularizers` of keep_group_alive. '
                     r'Expected at least one OpRegularizer. '
                     r'Received: regularizers=\[\]'):
    minimum_alive_regularizer.keep_group_alive([])


def test_keep_sets_alive_with_groups_of_several_regularizers():
  # Group 1 is two one-channel slices (0.1, 0.3); group 2 one regularizer.
  a, b = _fixed([0.1]), _fixed([0.3])
  c = _fixed([0.25, 0.0, 0.2])
  kept = minimum_alive_regularizer.keep_sets_alive([[[a, b], c]],
                                                   minimum=2)
  # Group 1 holds the largest value: both its channels, not 2 per slice.
  assert (_alive(kept, a), _alive(kept, b), _alive(kept, c)) == (
      [True], [True], [False, False, False])
  one = minimum_alive_regularizer.keep_sets_alive([[c, [a, b]]])
  assert (_alive(one, a), _alive(one, b), _alive(one, c)) == (
      [False], [True], [False, False, False])
  # A group of one regularizer may be given as a list of one.
  listed = minimum_alive_regularizer.keep_sets_alive([[[c], [a]]],
                                                     minimum=2)
  assert (_alive(listed, a), _alive(listed, c)) == (
      [False], [True, False, True])
