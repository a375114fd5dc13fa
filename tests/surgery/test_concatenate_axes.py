"""Concatenations along any axis: only the channel axis adds up channels.

A concatenation along positions, time or batch keeps the channel count:
channel c of the output is channel c of every input, so the inputs' groups
merge (issue 22: a detector's per-scale boxes concatenated along the
positions axis at a model output failed to rebuild with "would have 8
channels instead of 4").
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import rebuild
from morph_net.testing import keras_corpus

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _groups(channels):
  return {frozenset(group) for group in channels.groups()}


def _data(model, seed=0):
  return np.random.default_rng(seed).normal(
      size=(2,) + tuple(model.input_shape[1:])).astype('float32')


def test_detector_rebuilds_with_its_outputs():
  model = keras_corpus.detector_head()
  channels = channel_model.analyze(model)
  assert channels.original_structure() == {
      'stem': 12, 'down': 16, 'head0': 8, 'head1': 8}
  assert channels.can_change_width('box0') == (
      False, 'its channels reach a model output')
  # The boxes of both scales are one group: channel c is coordinate c.
  assert {frozenset(['box0', 'box1']), frozenset(['cls0', 'cls1'])} <= (
      _groups(channels))
  rebuilt = rebuild.rebuild(model, channels.original_structure(),
                            transfer_weights=True)
  assert [tuple(o.shape) for o in rebuilt.outputs] == [(None, 80, 4),
                                                       (None, 80, 3)]
  data = _data(model)
  for want, got in zip(model.predict(data, verbose=0),
                       rebuilt.predict(data, verbose=0)):
    np.testing.assert_array_equal(want, got)


def test_detector_narrows_behind_the_concatenation():
  model = keras_corpus.detector_head()
  rebuilt = rebuild.rebuild(model, {'stem': 5, 'down': 7, 'head0': 3,
                                    'head1': 2}, transfer_weights=True)
  assert rebuilt.get_layer('box0').kernel.shape == (3, 3, 3, 4)
  assert rebuilt.get_layer('box1').kernel.shape == (3, 3, 2, 4)
  assert [tuple(o.shape) for o in rebuilt.outputs] == [(None, 80, 4),
                                                       (None, 80, 3)]


def _two_branch(rank, axis):
  """Dense (rank 3) or Conv2D (rank 4) branches 'a' and 'b', concatenated
  along `axis`, then a width-taking layer 'c'."""
  if rank == 3:
    x = keras.Input((5, 3))
    a, b = L.Dense(6, name='a')(x), L.Dense(6, name='b')(x)
    y = L.Concatenate(axis=axis, name='cat')([a, b])
    y = L.Dense(4, name='c')(y)
    y = L.GlobalAveragePooling1D(name='gap')(y)
  else:
    x = keras.Input((4, 4, 3))
    a = L.Conv2D(6, 1, name='a')(x)
    b = L.Conv2D(6, 1, name='b')(x)
    y = L.Concatenate(axis=axis, name='cat')([a, b])
    y = L.Conv2D(4, 1, name='c')(y)
    y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


@pytest.mark.parametrize('rank,axis', [(3, -1), (3, 2), (4, -1), (4, 3)])
def test_channel_axis_concatenation_lays_channels_side_by_side(rank, axis):
  model = _two_branch(rank, axis)
  channels = channel_model.analyze(model)
  assert {frozenset(['a']), frozenset(['b'])} <= _groups(channels)
  rebuilt = rebuild.rebuild(model, {'a': 2, 'b': 5, 'c': 4})
  assert rebuilt.get_layer('cat').output.shape[-1] == 7
  # A vanished input is skipped.
  rebuilt = rebuild.rebuild(model, {'a': 0, 'b': 5, 'c': 4})
  assert rebuilt.get_layer('c').kernel.shape[-2] == 5


@pytest.mark.parametrize('rank,axis', [(3, 1), (3, -2), (4, 1), (4, 2),
                                       (4, -3), (4, 0)])
def test_other_axis_concatenation_merges_groups(rank, axis):
  model = _two_branch(rank, axis)
  channels = channel_model.analyze(model)
  assert frozenset(['a', 'b']) in _groups(channels)
  rebuilt = rebuild.rebuild(model, {'a': 2, 'b': 2, 'c': 4},
                            transfer_weights=True)
  assert rebuilt.get_layer('cat').output.shape[-1] == 2
  assert rebuilt.get_layer('c').kernel.shape[-2] == 2
  with pytest.raises(errors.StructureError) as raised:
    rebuild.rebuild(model, {'a': 2, 'b': 5, 'c': 4})
  assert str(raised.value) == (
      "Layers ['a', 'b'] form one channel group (their outputs are added, "
      'multiplied or normalised together) and must have equal widths. '
      'Received: a=2, b=5. Give every layer of the group the same width.')


def test_other_axis_concatenation_identity_keeps_outputs():
  model = _two_branch(4, 2)
  rebuilt = rebuild.rebuild(model, {}, transfer_weights=True)
  data = _data(model)
  np.testing.assert_array_equal(model.predict(data, verbose=0),
                                rebuilt.predict(data, verbose=0))


def test_other_axis_concatenation_vanishes_whole():
  x = keras.Input((4, 4, 3))
  a = L.Conv2D(6, 1, name='a')(x)
  b = L.Conv2D(6, 1, name='b')(x)
  y = L.Concatenate(axis=1, name='cat')([a, b])
  skip = L.Conv2D(6, 1, name='skip')(L.Concatenate(axis=1, name='cat2')(
      [x, x]))
  y = L.Add(name='add')([y, skip])
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D(name='gap')(y)))
  channels = channel_model.analyze(model)
  assert frozenset(['a', 'b', 'skip']) in _groups(channels)
  plan = plan_lib.RebuildPlan(channels, {'a': 0, 'b': 0, 'skip': 0},
                              check_vanishing=False)
  assert {'a', 'b', 'cat', 'add', 'gap'} <= plan.vanished


def test_reshape_to_positions_with_inferred_axis_narrows():
  """A Reshape((-1, C)) passes channels through; the rebuilt target names
  the rebuilt width (two -1 would not be a shape)."""
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(6, 1, name='conv')(x)
  y = L.Reshape((-1, 6), name='tokens')(y)
  y = L.Dense(5, name='proj')(y)
  model = keras.Model(x, L.GlobalAveragePooling1D(name='gap')(y))
  channels = channel_model.analyze(model)
  assert channels.can_change_width('conv') == (True, '')
  rebuilt = rebuild.rebuild(model, {'conv': 2}, transfer_weights=True)
  assert rebuilt.get_layer('tokens').target_shape == (-1, 2)
  assert rebuilt.get_layer('tokens').output.shape == (None, 16, 2)


def test_reshape_flattening_is_a_flatten():
  x = keras.Input((2, 3, 4))
  y = L.Conv2D(5, 1, name='conv')(x)
  y = L.Reshape((30,), name='flat')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  rebuilt = rebuild.rebuild(model, {'conv': 3})
  assert rebuilt.get_layer('flat').output.shape == (None, 18)
  assert rebuilt.get_layer('logits').kernel.shape == (18, 2)
