"""Tests for the channel model's queries and morph_net.surgery.plan."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def test_original_structure_and_which_widths_can_change():
  channels = channel_model.analyze(tm.residual_model())
  assert channels.original_structure() == {
      'stem': 8, 'b1_conv1': 6, 'b1_conv2': 8, 'b2_conv1': 6, 'b2_conv2': 12,
      'b2_proj': 12}
  assert channels.original_structure(changeable_only=False)['logits'] == 5
  assert channels.can_change_width('b2_proj') == (True, '')
  assert channels.can_change_width('logits') == (
      False, 'its channels reach a model output')
  frozen = channel_model.analyze(tm.input_add_model())
  assert frozen.can_change_width('c') == (
      False, "it is the model input 'image'")
  assert frozen.original_structure() == {}


def test_spaces_of_layers():
  channels = channel_model.analyze(tm.inception_model())
  concat = channels.output_space('concat')
  assert channels.space_size(concat) == 4 + 5 + 3
  assert len(channels.input_spaces('concat')) == 3
  assert [channels.find(g) for g in concat.group_ids(channels.table)] == [
      channels.group_of(n) for n in ('tower1_conv', 'tower2_conv',
                                     'tower3_proj')]


def test_plan_widths_of_rebuilt_layers():
  channels = channel_model.analyze(tm.inception_model())
  plan = plan_lib.RebuildPlan(channels, {'tower2_reduce': 0, 'tower1_conv': 2})
  assert plan.vanished == {'tower2_reduce', 'tower2_reduce_bn',
                           'tower2_reduce_relu', 'tower2_conv',
                           'tower2_conv_bn', 'tower2_conv_relu'}
  assert plan.output_width('concat') == 2 + 3
  assert plan.input_width('head') == 5


def test_rebuildable_structure_keeps_one_channel_only_where_needed():
  channels = channel_model.analyze(tm.inception_model())
  assert plan_lib.rebuildable_structure(
      channels, {'tower2_reduce': 0, 'head': 0, 'stem': 8}) == {
          'tower2_reduce': 0, 'head': 1, 'stem': 8}
  multiply = channel_model.analyze(tm.multiply_model())
  assert plan_lib.rebuildable_structure(multiply, {'a': 0, 'out': 2}) == {
      'a': 1, 'out': 2}
  sequential = channel_model.analyze(tm.sequential_model())
  assert plan_lib.rebuildable_structure(sequential, {'c1': 0, 'c2': 3}) == {
      'c1': 1, 'c2': 3}


def test_vanishing_problems_are_recorded_without_check():
  channels = channel_model.analyze(tm.inception_model())
  plan = plan_lib.RebuildPlan(channels, {'head': 0}, check_vanishing=False)
  assert len(plan.vanishing_problems) == 1
  assert 'Model output' in plan.vanishing_problems[0]


def test_vanishing_in_a_sequential_model_vanishes_its_output():
  with pytest.raises(errors.StructureError,
                     match=r"Model output of layer '.*' \(.*\) vanished.*"
                     r"\(width-0 layers: \['c2'\]\)"):
    rebuild.rebuild(tm.sequential_model(), {'c2': 0})


@pytest.mark.parametrize('width', [2.5, float('nan'), '3', True])
def test_width_that_is_not_a_whole_number_raises(width):
  with pytest.raises(errors.StructureError) as context:
    rebuild.rebuild(tm.residual_model(), {'stem': width})
  assert str(context.value) == (
      "Width of layer 'stem' must be a whole number of channels. Received: "
      '%r (%s). Round it, e.g. with expand_structure --round_to.' %
      (width, type(width).__name__))


def test_whole_float_and_numpy_widths_are_accepted():
  plan = plan_lib.RebuildPlan(
      channel_model.analyze(tm.residual_model()),
      {'stem': 4.0, 'b1_conv2': np.int64(4), 'b2_conv2': 6, 'b2_proj': 6})
  assert (plan.widths['stem'], plan.widths['b1_conv2']) == (4, 4)
  assert all(type(w) is int for w in plan.widths.values())


def test_negative_width_raises():
  with pytest.raises(errors.StructureError,
                     match=r"Width of layer 'stem' must be >= 0. Received: "
                     '-2'):
    rebuild.rebuild(tm.residual_model(), {'stem': -2, 'b1_conv2': -2})


def test_channel_model_of_another_model_is_refused():
  model = tm.residual_model()
  other = channel_model.analyze(tm.inception_model())
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"channel model of model 'inception', not of "
                     r"'residual'"):
    rebuild.rebuild(model, {}, channels=other)
  same = channel_model.analyze(model)
  new = rebuild.rebuild(model, {'b1_conv1': 2}, channels=same)
  assert new.get_layer('b1_conv1').filters == 2


def test_unbuilt_sequential_model_is_refused():
  model = keras.Sequential([L.Dense(2)], name='lazy')
  with pytest.raises(errors.InvalidArgumentError,
                     match="Sequential model 'lazy' is not built with an "
                     r'Input: start it with keras.Input\(shape\)'):
    channel_model.analyze(model)


def test_an_output_keeps_its_width():
  x = keras.Input((4, 4, 3))
  a = L.Conv2D(3, 1, name='a')(x)
  b = L.Conv2D(5, 1, name='b')(x)
  model = keras.Model(x, L.Concatenate(name='cat')([a, b]))
  with pytest.raises(errors.StructureError,
                     match=r"layers \['b'\] cannot change \(5 -> 4\): their "
                     r'channels reach a model output, and a model output '
                     r'keeps its width'):
    rebuild.rebuild(model, {'b': 4})
  with pytest.raises(errors.StructureError,
                     match=r"Model output of layer 'cat' \(Concatenate\) "
                     r'would have 5 channels instead of 8: part of it '
                     r"vanished \(width-0 layers: \['a'\]\)"):
    rebuild.rebuild(model, {'a': 0})
