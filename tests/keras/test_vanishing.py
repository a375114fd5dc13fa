"""Layers vanishing in cascade in both engines' costs (keras/vanishing.py).

`rebuild` removes a layer whose every input vanished; the graph engine
(`ModelRegularizer`) and the layer-level engine (`LayerRegularizer`) count
its group's channels as dead and its arithmetic as 0. The hand counts are
FLOPs of Dense layers on one position: 2 x inputs x outputs.
"""

import keras
import numpy as np
import pytest

from morph_net.keras import layer_regularizer
from morph_net.keras import model_regularizer
from morph_net.keras import vanishing
from morph_net.surgery import channel_model
from morph_net.surgery import rebuild
from morph_net.testing import config_flops

L = keras.layers
_ENGINES = {
    'graph': model_regularizer.ModelRegularizer,
    'layer': layer_regularizer.LayerRegularizer,
}
# Python booleans: the flags of `Vanishing` without tensors.
_PYTHON = vanishing.Logic(all_of=all, any_of=any, not_=lambda x: not x,
                          true=lambda: True)


def _kill(model, name):
  """Every gamma of batch norm `name` 0 (its betas 1, 2, ...)."""
  bn = model.get_layer(name)
  size = bn.gamma.shape[0]
  bn.gamma.assign(np.zeros(size, 'float32'))
  bn.beta.assign(np.arange(1, size + 1, dtype='float32'))


def _dense_bn(x, name, width):
  x = L.Dense(width, use_bias=False, name=name)(x)
  return L.BatchNormalization(name='bn' + name)(x)


def _cascade_into_a_concat():
  """x1 -> a (4) -> b (3) -> c (2), each with a batch norm, concatenated
  with x2 -> d (2) -> logits (2)."""
  x1, x2 = keras.Input((1,), name='x1'), keras.Input((1,), name='x2')
  y = x1
  for name, width in (('a', 4), ('b', 3), ('c', 2)):
    y = _dense_bn(y, name, width)
  y = L.Concatenate(name='cat')([y, _dense_bn(x2, 'd', 2)])
  return keras.Model([x1, x2], L.Dense(2, name='logits')(y))


def _branch_into_an_add():
  """x1 (4) -> a (4) -> b (3) -> c (2), added to x1 -> e (2); logits (2)."""
  x1 = keras.Input((4,), name='x1')
  y = x1
  for name, width in (('a', 4), ('b', 3), ('c', 2)):
    y = _dense_bn(y, name, width)
  y = L.Add(name='add')([y, _dense_bn(x1, 'e', 2)])
  return keras.Model(x1, L.Dense(2, name='logits')(y))


def _nested_model():
  """x1 -> a (4) -> nested [b (3) -> bnb] -> concatenated with x2."""
  inner_input = keras.Input((4,))
  nested = keras.Model(inner_input, _dense_bn(inner_input, 'b', 3),
                       name='nested')
  x1, x2 = keras.Input((1,), name='x1'), keras.Input((1,), name='x2')
  y = L.Concatenate(name='cat')([nested(_dense_bn(x1, 'a', 4)), x2])
  return keras.Model([x1, x2], L.Dense(2, name='logits')(y))


def _separable_conv():
  """x1 (3 x 5) -> SeparableConv1D (1 filter, 2 per channel, stride 2,
  'same': 2 positions) -> bn -> flattened, concatenated with x2 -> logits."""
  x1, x2 = keras.Input((3, 5), name='x1'), keras.Input((1,), name='x2')
  y = L.SeparableConv1D(1, 2, strides=2, padding='same', depth_multiplier=2,
                        use_bias=False, name='sep')(x1)
  y = L.Flatten(name='flat')(L.BatchNormalization(name='bnsep')(y))
  y = L.Concatenate(name='cat')([y, x2])
  return keras.Model([x1, x2], L.Dense(2, name='logits')(y))


def _gru():
  """x1 (5 steps) -> a (4) -> bna -> GRU (2 units), concatenated with x2
  -> logits (2)."""
  x1, x2 = keras.Input((5, 1), name='x1'), keras.Input((1,), name='x2')
  g = L.GRU(2, name='gru')(_dense_bn(x1, 'a', 4))
  y = L.Concatenate(name='cat')([g, x2])
  return keras.Model([x1, x2], L.Dense(2, name='logits')(y))


def _bidirectional_lstm():
  """x1 (5 steps) -> a (4) -> bna -> Bidirectional LSTM (2 units each way,
  every step: 5 x 4) -> flattened (20), concatenated with x2 -> logits
  (2)."""
  x1, x2 = keras.Input((5, 1), name='x1'), keras.Input((1,), name='x2')
  y = L.Bidirectional(L.LSTM(2, return_sequences=True), name='bi')(
      _dense_bn(x1, 'a', 4))
  y = L.Concatenate(name='cat')([L.Flatten(name='flat')(y), x2])
  return keras.Model([x1, x2], L.Dense(2, name='logits')(y))


# (model, batch norm killed, FLOPs, alive counts). a dead: b and c vanish
# in cascade, their channels count at no reader and their arithmetic is 0.
_CASES = {
    # d 2 x 1 x 2, logits 2 x 2 x 2 (before: c 12, logits 16).
    'concat': (_cascade_into_a_concat, 'bna', 12.0,
               {'a': 0, 'b': 0, 'c': 0, 'd': 2}),
    # e 2 x 4 x 2, logits 2 x 2 x 2; c's group lives with e (before: c
    # 2 x 3 x 2 more).
    'add': (_branch_into_an_add, 'bna', 24.0,
            {'a': 0, 'b': 0, 'c': 2, 'e': 2}),
    # logits 2 x 1 x 2 (before: 2 x 4 x 2).
    'nested': (_nested_model, 'bna', 4.0, {'a': 0, 'b': 0}),
    # sep has width 0: rebuild removes its depthwise step too (before:
    # 2 x 2 positions x 2 taps x 5 x 2 = 80 more); logits 2 x 1 x 2.
    'separable': (_separable_conv, 'bnsep', 4.0, {'sep': 0}),
    # Nothing killed: a 2 x 1 x 4, b 2 x 4 x 3, logits 2 x 4 x 2.
    'alive': (_nested_model, None, 48.0, {'a': 4, 'b': 3}),
    # The recurrent layers keep their units under Gamma (no structure
    # entry); a dead, they read only a constant and vanish with their
    # units at logits: 2 x 1 x 2 (before, in the graph engine: logits
    # 2 x (2 + 1) x 2 = 12 for the GRU, 2 x (20 + 1) x 2 = 84 for the
    # LSTM).
    'gru': (_gru, 'bna', 4.0, {'a': 0}),
    'bidirectional_lstm': (_bidirectional_lstm, 'bna', 4.0, {'a': 0}),
    # Nothing killed: a 2 x 5 steps x 1 x 4 = 40; the GRU 2 x 5 steps x
    # 3 gates x 2 units x (4 + 2) = 360; logits 2 x 3 x 2 = 12.
    'gru_alive': (_gru, None, 412.0, {'a': 4}),
}


@pytest.mark.parametrize('engine', sorted(_ENGINES))
@pytest.mark.parametrize('case', sorted(_CASES))
def test_both_engines_cost_what_rebuild_keeps(engine, case):
  build, killed, flops, alive = _CASES[case]
  model = build()
  if killed:
    _kill(model, killed)
  regularizer = _ENGINES[engine](model, 'GammaFlopsRegularizer',
                                 gamma_threshold=1e-3)
  assert float(regularizer.cost()) == flops
  assert regularizer.alive_counts() == alive
  assert config_flops.config_flops(rebuild.rebuild(model, regularizer)) == (
      flops)


@pytest.mark.parametrize('engine', sorted(_ENGINES))
def test_both_engines_count_no_activations_of_a_vanished_layer(engine):
  """Activation counts: c vanishes though its group lives with e, so its
  matmul's 2 outputs count 0; b's 3 too. e 2 + logits 2."""
  model = _branch_into_an_add()
  _kill(model, 'bna')
  regularizer = _ENGINES[engine](model, 'GammaActivationRegularizer',
                                 gamma_threshold=1e-3)
  assert float(regularizer.cost()) == 4.0


# ------------------------------------------------ Vanishing on its own.


def test_vanishing_follows_the_rebuild_plan():
  model = _branch_into_an_add()
  channels = channel_model.analyze(model)
  flags = vanishing.Vanishing(channels, {'a': True}, _PYTHON)
  # bna reads the dead a; b, bnb, c, bnc in cascade; the Add keeps e.
  assert {n: d for n, d in flags.inputs_dead.items() if d} == {
      'bna': True, 'b': True, 'bnb': True, 'c': True, 'bnc': True}
  # The Add and logits keep e's input: no flag.
  assert 'add' not in flags.inputs_dead and 'logits' not in flags.inputs_dead
  # b's group has no other writer; c's has e, which cannot lose its input.
  assert flags.group_masks() == {'b': False}


def test_vanishing_makes_no_flag_where_nothing_can_die():
  model = _branch_into_an_add()
  channels = channel_model.analyze(model)
  flags = vanishing.Vanishing(channels, {}, _PYTHON)
  assert flags.inputs_dead == {}
  assert flags.group_masks() == {}
  # Only what a may kill gets a flag: the layers after a, up to the Add
  # (which e keeps).
  flags = vanishing.Vanishing(channels, {'a': False}, _PYTHON)
  assert sorted(flags.inputs_dead) == ['b', 'bna', 'bnb', 'bnc', 'c']
  assert not any(flags.inputs_dead.values())
  assert flags.group_masks() == {'b': True}


@pytest.mark.parametrize('case', sorted(_CASES))
def test_both_engines_give_the_same_term(case):
  """The term reads the masked alive vectors in both engines (and keeps
  the arithmetic of a vanished layer: it is the cost's relaxation)."""
  build, killed, _, _ = _CASES[case]
  model = build()
  if killed:
    _kill(model, killed)
  terms = [float(_ENGINES[engine](model, 'GammaFlopsRegularizer',
                                  gamma_threshold=1e-3).term())
           for engine in sorted(_ENGINES)]
  assert terms[0] == pytest.approx(terms[1], rel=1e-6)


def test_may_vanish_names_the_layers_a_zero_width_may_remove():
  """Before any alive vector: a may be 0, so bna, the GRU and their
  readers up to the concatenation (which x2 keeps) may vanish."""
  channels = channel_model.analyze(_gru())
  assert vanishing.may_vanish(channels, {'a'}) == {'a', 'bna', 'gru'}
  assert vanishing.may_vanish(channels, set()) == frozenset()
