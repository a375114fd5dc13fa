"""Tests for morph_net.surgery.rebuild (and the plan and weight transfer)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.surgery import channel_model
from morph_net.surgery import rebuild
from morph_net.surgery import spaces
from morph_net.testing import surgery_models as tm

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _inputs(model, n=2, seed=0):
  shape = model.inputs[0].shape[1:]
  return np.random.RandomState(seed).rand(n, *shape).astype('float32')


def _kept_first(channels, structure, new_model=None):
  """{group id: first `width` channels} for every group of `structure`.

  Groups whose layers all vanished in `new_model` (their inputs died) keep
  no channel, as the rebuilt model drops them.
  """
  kept = {}
  for name, width in structure.items():
    kept[channels.group_of(name)] = np.arange(width)
  if new_model is not None:
    names = set(l.name for l in new_model.layers)
    for group in channels.groups():
      if not any(n in names for n in group):
        kept[channels.group_of(group[0])] = np.arange(0)
  return kept


def _bn_layers_of_group(channels, gid):
  names = []
  for name, layer in channels.layers.items():
    if isinstance(layer, L.BatchNormalization):
      space = channels.layer_in[name][0]
      if isinstance(space, spaces.Group) and channels.find(space.gid) == gid:
        names.append(name)
  return names


def _zero_removed(model, channels, kept, beta=False):
  """Zeroes BN gamma (and beta) of the channels not kept, in place."""
  for gid, idx in kept.items():
    for bn in _bn_layers_of_group(channels, gid):
      layer = model.get_layer(bn)
      mask = np.ones(layer.gamma.shape[0], bool)
      mask[idx] = False
      for var in [layer.gamma] + ([layer.beta] if beta else []):
        value = keras.ops.convert_to_numpy(var).copy()
        value[mask] = 0.0
        var.assign(value)


def _zero_removed_filters(model, channels, kept):
  """Zeroes the kernels (and biases) of the output channels not kept."""
  for name in channels.source_layers():
    gid = channels.group_of(name)
    if gid not in kept:
      continue
    layer = model.get_layer(name)
    for var in layer.weights:
      value = keras.ops.convert_to_numpy(var).copy()
      mask = np.ones(value.shape[-1], bool)
      mask[kept[gid]] = False
      value[..., mask] = 0.0
      var.assign(value)


# Identity structure and weight transfer.
@pytest.mark.parametrize('builder', [
    tm.residual_model, tm.inception_model, tm.depthwise_model,
    tm.sequential_model,
    lambda: tm.depthwise_model(depth_multiplier=2)])
def test_identity_structure_with_transfer_reproduces_outputs(builder):
  model = builder()
  tm.randomize_batch_norms(model)
  new = rebuild.rebuild(model, {}, transfer_weights=True)
  assert type(new) is type(model)
  assert [l.name for l in new.layers] == [l.name for l in model.layers]
  x = _inputs(model)
  np.testing.assert_array_equal(model(x), new(x))


def test_pruned_transfer_matches_original_with_zeroed_channels():
  model = tm.residual_model()
  tm.randomize_batch_norms(model)
  channels = channel_model.analyze(model)
  structure = {'stem': 5, 'b1_conv2': 5, 'b1_conv1': 4, 'b2_conv1': 2,
               'b2_conv2': 7, 'b2_proj': 7}
  rng = np.random.RandomState(1)
  kept = {}
  masks = {}
  for name, width in structure.items():
    gid = channels.group_of(name)
    if gid not in kept:
      kept[gid] = np.sort(rng.choice(channels.original_width(name), width,
                                     replace=False))
    mask = np.zeros(channels.original_width(name), bool)
    mask[kept[gid]] = True
    masks[name] = mask
  # The plain copy (folding would keep the removed channels' betas).
  new = rebuild.rebuild(model, structure, transfer_weights=True,
                        alive_masks=masks, fold_constants=False)
  _zero_removed(model, channels, kept, beta=True)
  x = _inputs(model)
  np.testing.assert_allclose(model(x), new(x), rtol=1e-5, atol=1e-5)


def test_pruned_transfer_through_flatten():
  model = tm.sequential_model()
  tm.randomize_batch_norms(model)
  channels = channel_model.analyze(model)
  new = rebuild.rebuild(model, {'c2': 4}, transfer_weights=True,
                        alive_masks={'c2': [1, 0, 1, 1, 0, 1]})
  _zero_removed(model, channels, {channels.group_of('c2'): [0, 2, 3, 5]},
                beta=True)
  x = _inputs(model)
  np.testing.assert_allclose(model(x), new(x), rtol=1e-5, atol=1e-5)


def test_default_transfer_keeps_largest_gammas():
  model = tm.sequential_model()
  gamma = np.array([0.1, 5, 0.2, 4, 3, 0.3, 0.4, 0.5], 'float32')
  model.get_layer('c1_bn').gamma.assign(gamma)
  new = rebuild.rebuild(model, {'c1': 3}, transfer_weights=True)
  np.testing.assert_array_equal(
      keras.ops.convert_to_numpy(new.get_layer('c1_bn').gamma), [5, 4, 3])
  assert isinstance(new, keras.Sequential)


# Topology morphing.
def test_dead_residual_branch_is_removed_and_skip_stays():
  model = tm.residual_model()
  tm.randomize_batch_norms(model)
  new = rebuild.rebuild(model, {'b1_conv1': 0}, transfer_weights=True)
  names = [l.name for l in new.layers]
  for gone in ['b1_conv1', 'b1_conv1_bn', 'b1_conv1_relu', 'b1_conv2',
               'b1_conv2_bn', 'b1_add']:
    assert gone not in names
  assert 'b1_out' in names and 'stem_relu' in names
  # The skip feeds b1_out directly.
  assert new.get_layer('b1_out').input is new.get_layer('stem_relu').output
  new(_inputs(model))


def test_dead_tower_is_dropped_from_concat():
  model = tm.inception_model()
  new = rebuild.rebuild(model, {'tower2_reduce': 0}, transfer_weights=True)
  names = [l.name for l in new.layers]
  assert 'tower2_reduce' not in names and 'tower2_conv' not in names
  assert new.get_layer('concat').output.shape[-1] == 4 + 3
  assert new.get_layer('head').kernel.shape[2] == 7
  # Weights of the surviving towers' channels reach the head unchanged.
  old_k = keras.ops.convert_to_numpy(model.get_layer('head').kernel)
  new_k = keras.ops.convert_to_numpy(new.get_layer('head').kernel)
  np.testing.assert_array_equal(new_k, old_k[:, :, [0, 1, 2, 3, 9, 10, 11]])


def test_all_towers_but_one_dead_concat_becomes_its_input():
  model = tm.inception_model()
  new = rebuild.rebuild(model, {'tower1_conv': 0, 'tower3_proj': 0})
  assert 'concat' not in [l.name for l in new.layers]
  assert new.get_layer('head').input.shape[-1] == 5


# Costs counted independently of the library.
@pytest.mark.parametrize('builder,structure', [
    (tm.residual_model, {'stem': 4, 'b1_conv2': 4, 'b1_conv1': 3,
                         'b2_conv1': 2, 'b2_conv2': 5, 'b2_proj': 5}),
    (tm.residual_model, {'b1_conv1': 0, 'b2_conv1': 3}),
    (tm.inception_model, {'tower2_reduce': 0, 'tower1_conv': 2,
                          'head': 6}),
    (tm.depthwise_model, {'expand': 5, 'se_reduce': 2, 'se_expand': 5,
                          'project': 4}),
])
def test_rebuilt_flops_and_params_match_library_prediction(
    builder, structure):
  model = builder()
  tm.randomize_batch_norms(model)
  channels = channel_model.analyze(model)
  new = rebuild.rebuild(model, structure)
  hand_flops = tm.hand_flops(new)
  params = tm.kernel_params(new)
  assert model_regularizer.model_cost(new) == hand_flops
  assert structure_cost.StructureCost(model).cost(structure) == hand_flops
  # Library prediction: the original with the removed channels' gammas at 0.
  _zero_removed(model, channels, _kept_first(channels, structure, new))
  if builder is tm.depthwise_model:
    pytest.skip('SE convs have no batch norm: gammas cannot kill them.')
  assert model_regularizer.model_cost(model) == hand_flops
  assert model_regularizer.model_cost(
      model, model_size_regularizer.GammaModelSizeRegularizer) == params


def test_rebuilt_flops_match_tf_profiler():
  model = tm.residual_model()
  structure = {'b1_conv1': 2, 'b2_conv1': 3, 'b2_conv2': 4, 'b2_proj': 4}
  new = rebuild.rebuild(model, structure)
  fn = tf.function(lambda t: new(t, training=False)).get_concrete_function(
      tf.TensorSpec([1, 16, 16, 3]))
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top
  frozen = convert_to_constants.convert_variables_to_constants_v2(fn)
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts['output'] = 'none'
  profile = tf.compat.v1.profiler.profile(
      graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd='scope',
      options=opts)

  def conv_and_matmul_flops(node):
    own = node.total_float_ops if node.name.endswith(
        ('/convolution', '/MatMul')) else 0
    return own + sum(conv_and_matmul_flops(c) for c in node.children)

  conv_flops = conv_and_matmul_flops(profile)
  assert conv_flops == tm.hand_flops(new)
  assert structure_cost.StructureCost(model).cost(structure) == conv_flops


def test_rebuilt_model_converts_to_tflite():
  model = tm.inception_model()
  new = rebuild.rebuild(model, {'tower2_reduce': 0, 'head': 4})
  converter = tf.lite.TFLiteConverter.from_keras_model(new)
  assert len(converter.convert()) > 1000


# Errors.
def test_inconsistent_group_widths_raise_naming_layers():
  model = tm.residual_model()
  with pytest.raises(ValueError, match=r"'stem', 'b1_conv2'.*stem=4, "
                     r"b1_conv2=5.*same width"):
    rebuild.rebuild(model, {'stem': 4, 'b1_conv2': 5})


def test_unknown_layer_suggests_name():
  with pytest.raises(ValueError) as e:
    rebuild.rebuild(tm.residual_model(), {'b1_conv': 3})
  assert str(e.value).startswith(
      "Structure names layer 'b1_conv', but no such layer in model "
      "'residual'; did you mean 'b1_conv2'? Structure layers without a width "
      "of their own in the model: ['b1_conv'].")


def test_unknown_layer_without_a_close_name_ends_its_sentence():
  with pytest.raises(ValueError) as e:
    rebuild.rebuild(tm.residual_model(), {'zzz': 3})
  assert str(e.value).startswith(
      "Structure names layer 'zzz', but no such layer in model 'residual'. "
      'Structure layers')


def test_non_width_layer_in_structure_raises():
  with pytest.raises(ValueError, match=r"'stem_bn'.*BatchNormalization.*"
                     "follows its input"):
    rebuild.rebuild(tm.residual_model(), {'stem_bn': 3})


def test_vanished_output_raises():
  with pytest.raises(errors.StructureError) as context:
    rebuild.rebuild(tm.inception_model(), {'head': 0})
  assert str(context.value) == (
      "Model output of layer 'logits' (Dense) vanished: every path to it "
      "goes through a layer of width 0 (width-0 layers: ['head']). Give one "
      'of them a width of at least 1 (a layer the regularizer killed whole: '
      'lower the strength, or set its width by hand).')


def test_strict_fallback_raises_and_zero_fallback_vanishes():
  model = tm.inception_model()
  with pytest.raises(KeyError, match=r"'stem' \(Conv2D\) is missing"):
    rebuild.rebuild(model, {}, fallback_rule='strict')
  with pytest.raises(ValueError, match='fallback_rule'):
    rebuild.rebuild(model, {}, fallback_rule='bogus')
  full = {n: 2 for n in channel_model.analyze(model).source_layers()}
  del full['tower1_conv']
  full['logits'] = 5
  new = rebuild.rebuild(model, full, fallback_rule='zero')
  assert 'tower1_conv' not in [l.name for l in new.layers]


def test_frozen_group_raises_with_reason():
  model = tm.input_add_model()
  with pytest.raises(ValueError, match=r"\['c'\] cannot change.*model input"):
    rebuild.rebuild(model, {'c': 2})


def test_partially_vanished_multiply_raises():
  model = tm.multiply_model()
  with pytest.raises(ValueError, match=r"'mul' \(Multiply\) has inputs that "
                     'vanished'):
    rebuild.rebuild(model, {'a': 0})


def test_subclassed_model_points_to_configurable_layers():
  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.conv = L.Conv2D(3, 1)

    def call(self, x):
      return self.conv(x)

  net = Net()
  net(np.zeros([1, 4, 4, 3], 'float32'))
  with pytest.raises(TypeError, match='subclassed.*ConfigurableLayers'):
    rebuild.rebuild(net, {})


def test_transfer_to_wider_structure_raises():
  with pytest.raises(ValueError, match='grows from 6 to 9'):
    rebuild.rebuild(tm.residual_model(), {'b1_conv1': 9},
                    transfer_weights=True)


def test_alive_mask_count_mismatch_raises():
  with pytest.raises(ValueError, match=r"alive_masks\['b1_conv1'\] has 2 of "
                     '6 channels alive, but the structure gives width 3'):
    rebuild.rebuild(tm.residual_model(), {'b1_conv1': 3},
                    transfer_weights=True,
                    alive_masks={'b1_conv1': [1, 1, 0, 0, 0, 0]})


# Model zoo: half the channels of every group removed.
_ZOO = {
    'ResNet50': lambda: keras.applications.ResNet50(
        weights=None, input_shape=(64, 64, 3), classes=10),
    'MobileNetV2': lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(64, 64, 3), classes=10),
    'DenseNet121': lambda: keras.applications.DenseNet121(
        weights=None, input_shape=(64, 64, 3), classes=10),
    'InceptionV3': lambda: keras.applications.InceptionV3(
        weights=None, input_shape=(96, 96, 3), classes=10),
}
_ZOO_MODELS = os.environ.get('MORPH_NET_ZOO', 'ResNet50,MobileNetV2').split(
    ',')


@pytest.mark.parametrize('name', _ZOO_MODELS)
def test_zoo_half_channels(name):
  model = _ZOO[name]()
  channels = channel_model.analyze(model)
  output_groups = channels.output_groups()
  structure = {}
  for group in channels.groups():
    gid = channels.group_of(group[0])
    if gid in output_groups or channels.frozen_reasons(group[0]):
      continue
    for layer_name in group:
      structure[layer_name] = channels.original_width(layer_name) // 2
  assert len(structure) > 20
  new = rebuild.rebuild(model, structure)
  assert new(_inputs(model, 1)).shape == (1, 10)
  hand_flops = tm.hand_flops(new)
  assert hand_flops < 0.4 * tm.hand_flops(model)
  predicted = structure_cost.StructureCost(model).cost(structure)
  assert predicted == hand_flops
  kept = _kept_first(channels, structure, new)
  try:
    _zero_removed(model, channels, kept)
    predicted = model_regularizer.model_cost(model)
  except errors.NoSourceOpsError:
    # Keras 3 BatchNormalization(axis=3) reshapes gamma before the scale Mul
    # (ResNet50); predict with group lasso, killing the removed filters.
    _zero_removed_filters(model, channels, kept)
    predicted = model_regularizer.model_cost(
        model, flop_regularizer.GroupLassoFlopsRegularizer, 1e-9)
  assert predicted == hand_flops


def test_tf_keras_model_is_refused_by_name():
  tf_keras = pytest.importorskip('tf_keras')
  model = tf_keras.Sequential(
      [tf_keras.Input((4,)), tf_keras.layers.Dense(2, name='d')], name='old')
  with pytest.raises(errors.UnsupportedModelError,
                     match=r"Model 'old' is a tf_keras\..*Sequential, not a "
                     r'Keras 3 model.*unset TF_USE_LEGACY_KERAS'):
    rebuild.rebuild(model, {'d': 1})


def test_unknown_on_growth_is_refused():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid value for argument `on_growth`. Expected "
                     r"one of \('raise', 'initialize'\). Received: "
                     "on_growth='grow'"):
    rebuild.rebuild(tm.residual_model(), {}, on_growth='grow')
