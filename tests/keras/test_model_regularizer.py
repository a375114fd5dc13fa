"""Tests of morph_net.keras.ModelRegularizer on Keras 3 models."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import activation_regularizer
from morph_net.network_regularizers import flop_regularizer
from morph_net.keras import structure_cost
from morph_net.network_regularizers import model_size_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import config_flops

GAMMA = flop_regularizer.GammaFlopsRegularizer
GROUP_LASSO = flop_regularizer.GroupLassoFlopsRegularizer
# conv1: 8x8x3 -> 8x8x4 (3x3, same); conv2: 8x8x4 -> 4x4x6 (3x3, stride 2);
# dense: 6 -> 3.
CONV1_FLOPS_PER_PAIR = 2 * 8 * 8 * 3 * 3
CONV2_FLOPS_PER_PAIR = 2 * 4 * 4 * 3 * 3
FULL_FLOPS = (CONV1_FLOPS_PER_PAIR * 3 * 4 + CONV2_FLOPS_PER_PAIR * 4 * 6 +
              2 * 6 * 3)


def _layers(x, scale=True):
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False, name='conv1')(x)
  x = keras.layers.BatchNormalization(scale=scale, name='bn1')(x)
  x = keras.layers.ReLU(name='relu1')(x)
  x = keras.layers.Conv2D(6, 3, strides=2, padding='same', use_bias=False,
                          name='conv2')(x)
  x = keras.layers.BatchNormalization(scale=scale, name='bn2')(x)
  x = keras.layers.ReLU(name='relu2')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  return keras.layers.Dense(3, name='dense')(x)


def functional_model(scale=True, input_shape=(8, 8, 3)):
  inputs = keras.Input(input_shape)
  return keras.Model(inputs, _layers(inputs, scale), name='functional')


def sequential_model():
  return keras.Sequential([
      keras.Input((8, 8, 3)),
      keras.layers.Conv2D(4, 3, padding='same', use_bias=False, name='conv1'),
      keras.layers.BatchNormalization(name='bn1'),
      keras.layers.ReLU(),
      keras.layers.Conv2D(6, 3, strides=2, padding='same', use_bias=False,
                          name='conv2'),
      keras.layers.BatchNormalization(name='bn2'),
      keras.layers.ReLU(),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(3, name='dense'),
  ], name='sequential')


class SubclassedModel(keras.Model):

  def __init__(self):
    super().__init__(name='subclassed')
    self.conv1 = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                                     name='conv1')
    self.bn1 = keras.layers.BatchNormalization(name='bn1')
    self.conv2 = keras.layers.Conv2D(6, 3, strides=2, padding='same',
                                     use_bias=False, name='conv2')
    self.bn2 = keras.layers.BatchNormalization(name='bn2')
    self.dense = keras.layers.Dense(3, name='dense')

  def call(self, x, training=False):
    x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
    x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
    return self.dense(tf.reduce_mean(x, [1, 2]))


def nested_model():
  inputs = keras.Input((8, 8, 3))
  backbone_in = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                          name='conv1')(backbone_in)
  x = keras.layers.BatchNormalization(name='bn1')(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.Conv2D(6, 3, strides=2, padding='same', use_bias=False,
                          name='conv2')(x)
  x = keras.layers.BatchNormalization(name='bn2')(x)
  backbone = keras.Model(backbone_in, keras.layers.ReLU()(x), name='backbone')
  y = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
  return keras.Model(inputs, keras.layers.Dense(3, name='dense')(y),
                     name='outer')


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _set_gamma(model, layer_name, values):
  layer = model.get_layer(layer_name)
  layer.gamma.assign(np.asarray(values, np.float32))


def test_term_and_cost_equal_core_on_same_graph():
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)
  fn = tf.compat.v1.wrap_function(lambda x: model(x, training=False),
                                  [tf.TensorSpec([None, 8, 8, 3])])
  with fn.graph.as_default():
    core = GAMMA([fn.graph.outputs[0].op], gamma_threshold=1e-3)
    fetches = [core.get_regularization_term(), core.get_cost()]
  term, cost = fn.prune(feeds=[], fetches=fetches)()
  assert float(reg.cost()) == pytest.approx(float(cost))
  assert float(reg.term()) == pytest.approx(float(term))
  assert float(reg.cost()) == FULL_FLOPS
  # Term with all gammas 1: each conv adds C * (in * out + out * in).
  expected_term = (CONV1_FLOPS_PER_PAIR * (3 * 4) +
                   CONV2_FLOPS_PER_PAIR * (4 * 6 + 6 * 4) + 2 * 3 * 6)
  assert float(reg.term()) == pytest.approx(expected_term)


@pytest.mark.parametrize('builder,kwargs', [
    (functional_model, {}),
    (sequential_model, {}),
    (nested_model, {}),
    (SubclassedModel, {'input_shape': (8, 8, 3)}),
])
def test_model_kinds_give_same_cost_and_layer_names(builder, kwargs):
  model = builder()
  if isinstance(model, SubclassedModel):
    model(np.zeros((1, 8, 8, 3), np.float32))
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=0.1,
                                     **kwargs)
  assert float(reg.cost()) == FULL_FLOPS
  assert reg.alive_counts() == {'conv1': 4, 'conv2': 6}
  bn1 = [l for l in _all_layers(model) if l.name == 'bn1'][0]
  bn1.gamma.assign([1.0, 0.0, 0.05, 1.0])
  assert reg.alive_counts() == {'conv1': 2, 'conv2': 6}
  expected = (CONV1_FLOPS_PER_PAIR * 3 * 2 + CONV2_FLOPS_PER_PAIR * 2 * 6 +
              2 * 6 * 3)
  assert float(reg.cost()) == expected


def _all_layers(model):
  return list(model._flatten_layers(include_self=False, recursive=True))


def test_gradients_reach_gammas_and_kernels():
  model = functional_model()
  gamma_reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)
  # The output layer 'dense' keeps its width unless asked otherwise.
  lasso_reg = morph_keras.ModelRegularizer(model, GROUP_LASSO, threshold=1e-3,
                                           keep_output_widths=False)
  kept_reg = morph_keras.ModelRegularizer(model, GROUP_LASSO, threshold=1e-3)
  variables = {w.path: w.value for w in model.trainable_weights}
  with tf.GradientTape(persistent=True) as tape:
    gamma_term = gamma_reg.term()
    lasso_term = lasso_reg.term()
    kept_term = kept_reg.term()
  gamma_grads = tape.gradient(gamma_term, variables)
  lasso_grads = tape.gradient(lasso_term, variables)
  kept_grads = tape.gradient(kept_term, variables)
  assert kept_grads['dense/kernel'] is None
  assert np.any(kept_grads['conv2/kernel'].numpy() != 0)
  assert gamma_grads['bn1/gamma'] is not None
  assert gamma_grads['bn2/gamma'] is not None
  assert gamma_grads['conv1/kernel'] is None
  assert np.all(gamma_grads['bn1/gamma'].numpy() > 0)
  for name in ('conv1/kernel', 'conv2/kernel', 'dense/kernel'):
    assert lasso_grads[name] is not None
    assert np.any(lasso_grads[name].numpy() != 0)


def test_group_lasso_alive_counts_follow_kernels():
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GROUP_LASSO, threshold=1e-3)
  assert reg.alive_counts() == {'conv1': 4, 'conv2': 6, 'dense': 3}
  kernel = model.get_layer('conv2').kernel
  value = kernel.numpy()
  value[..., :4] = 0.0
  kernel.assign(value)
  assert reg.alive_counts()['conv2'] == 2


def test_regularizer_class_by_name():
  model = functional_model()
  by_name = morph_keras.ModelRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=1e-3)
  by_class = morph_keras.ModelRegularizer(model, GROUP_LASSO, threshold=1e-3)
  assert float(by_name.cost()) == float(by_class.cost())
  with pytest.raises(errors.InvalidArgumentError) as context:
    morph_keras.ModelRegularizer(model, 'GamaFlopsRegularizer')
  assert "Did you mean 'GammaFlopsRegularizer'?" in str(context.value)


def test_strength_changes_loss_without_retracing():
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3,
                                     strength=1.0)

  @tf.function
  def loss():
    return reg.loss()

  first = float(loss())
  reg.set_strength(2.0)
  second = float(loss())
  assert second == pytest.approx(2 * first)
  assert loss.experimental_get_tracing_count() == 1
  strength = reg.set_strength_relative_to_cost(3.0)
  assert strength == pytest.approx(3.0 / FULL_FLOPS)
  assert float(reg.strength) == pytest.approx(3.0 / FULL_FLOPS)


def test_fit_trains_shows_metrics_and_callback_writes_structure(tmp_path):
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)
  reg.set_strength_relative_to_cost(1.0)
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=reg.wrap_loss(keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True)),
                metrics=reg.metrics())
  x = np.random.RandomState(0).rand(32, 8, 8, 3).astype(np.float32)
  y = np.arange(32) % 3
  callback = morph_keras.StructureExportCallback(reg, str(tmp_path),
                                                 every_n_steps=2)
  history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                      callbacks=[callback,
                                 morph_keras.CostSummaryCallback(
                                     reg, str(tmp_path), every_n_steps=2)])
  assert history.history['flops'][0] == pytest.approx(FULL_FLOPS)
  assert 'morph_net_loss' in history.history
  structure_dir = tmp_path / 'learned_structure'
  names = sorted(os.listdir(structure_dir))
  assert names == ['alive', 'alive_2', 'alive_4', 'alive_6', 'alive_8',
                   'structure.png']
  with open(structure_dir / 'structure.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  text = (structure_dir / 'alive').read_text()
  assert json.loads(text) == reg.alive_counts()
  assert text == json.dumps(reg.alive_counts(), sort_keys=True, indent=2)
  assert os.listdir(tmp_path / 'morph_net')  # TensorBoard event file.


def test_fit_with_zero_data_loss_moves_gammas_by_lr_times_strength():
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3,
                                     strength=1.0)
  zero_loss = lambda y_true, y_pred: 0.0 * tf.reduce_sum(y_pred, -1)
  model.compile(optimizer=keras.optimizers.SGD(0.001),
                loss=reg.wrap_loss(zero_loss))
  before = model.get_layer('bn1').gamma.numpy().copy()
  grad = None
  with tf.GradientTape() as tape:
    term = reg.term()
  grad = tape.gradient(term, model.get_layer('bn1').gamma.value).numpy()
  model.fit(np.zeros((4, 8, 8, 3), np.float32), np.zeros(4), batch_size=4,
            epochs=1, verbose=0)
  after = model.get_layer('bn1').gamma.numpy()
  np.testing.assert_allclose(before - after, 0.001 * grad, rtol=1e-4)


def test_mixed_precision_model_works():
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    model = functional_model()
    reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)
    assert float(reg.cost()) == FULL_FLOPS
    assert reg.term().dtype == tf.float32
    model.compile(optimizer='sgd', loss=reg.wrap_loss(
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
    model.fit(np.zeros((4, 8, 8, 3), np.float32), np.zeros(4), verbose=0)
  finally:
    keras.mixed_precision.set_global_policy('float32')


def test_model_size_regularizer_through_bridge():
  reg = morph_keras.ModelRegularizer(
      functional_model(), model_size_regularizer.GammaModelSizeRegularizer,
      gamma_threshold=1e-3)
  assert float(reg.cost()) == 9 * 3 * 4 + 9 * 4 * 6 + 6 * 3


def test_error_unbuilt_model():
  model = keras.Sequential([keras.layers.Conv2D(4, 3)])
  with pytest.raises(errors.InvalidArgumentError, match='is not built'):
    morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)


def test_error_unknown_spatial_size_and_fix_by_input_shape():
  model = functional_model(input_shape=(None, None, 3))
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'unknown input size.*input_shape=\(H, W, C\)'):
    morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3,
                                     input_shape=(8, 8, 3))
  assert float(reg.cost()) == FULL_FLOPS


def test_error_gamma_without_batch_norm_scale():
  with pytest.raises(errors.NoSourceOpsError,
                     match=r'scale=True.*conv1.*GroupLasso'):
    morph_keras.ModelRegularizer(functional_model(scale=False), GAMMA,
                                 gamma_threshold=1e-3)


def test_error_layer_with_untraceable_size_names_the_op():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Lambda(
      lambda t: tf.image.resize(t, tf.shape(t)[1:3] * 1),
      output_shape=(None, None, 3))(inputs)
  model = keras.Model(inputs, _layers(x))
  with pytest.raises(errors.UnsupportedGraphError,
                     match=r"'.*conv1.*' \(Conv2D\) has an unknown output size"):
    morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)


def test_error_not_a_model():
  with pytest.raises(errors.InvalidArgumentError, match='Expected a keras'):
    morph_keras.ModelRegularizer(keras.layers.Dense(3), GAMMA,
                                 gamma_threshold=1e-3)


def test_export_tool_writes_the_callbacks_json_for_the_same_weights(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  model = functional_model()
  reg = morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=0.1)
  model.get_layer('bn1').gamma.assign([1.0, 0.0, 0.05, 1.0])
  model.get_layer('bn2').gamma.assign([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
  model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse')
  model.fit(np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 3)), verbose=0,
            callbacks=[morph_keras.StructureExportCallback(
                reg, str(tmp_path / 'run'), every_n_steps=None, plot=False)])
  model_path = str(tmp_path / 'model.keras')
  model.save(model_path)
  exported = str(tmp_path / 'exported.json')
  result = subprocess.run(
      [sys.executable, '-m', 'morph_net.tools.export_structure',
       '--model=' + model_path, '--regularizer=GammaFlopsRegularizer',
       '--threshold=0.1', '--output=' + exported],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'run' / 'learned_structure' / 'alive') as f:
    from_callback = f.read()
  with open(exported) as f:
    assert f.read() == from_callback
  assert json.loads(from_callback) == {'conv1': 2, 'conv2': 4}


def test_error_subclassed_model_without_input_shape():
  model = SubclassedModel()
  model(np.zeros((1, 8, 8, 3), np.float32))
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"model 'subclassed' \(SubclassedModel\) has no "
                     r'known input tensors.*Pass input_shape=\(H, W, C\)'):
    morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)


def test_error_float16_model():
  keras.mixed_precision.set_global_policy('float16')
  try:
    model = functional_model()
  finally:
    keras.mixed_precision.set_global_policy('float32')
  with pytest.raises(errors.InvalidArgumentError,
                     match="Model 'functional' uses dtype policy 'float16'; "
                     'MorphNet supports float32 and mixed_float16'):
    morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3)


def test_error_strength_relative_to_a_zero_cost():
  model = functional_model()
  for name in ('conv1', 'conv2', 'dense'):
    kernel = model.get_layer(name).kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
  # min_channels=0: by default the chain's strongest channels stay alive.
  reg = morph_keras.ModelRegularizer(model, GROUP_LASSO, threshold=1e-3,
                                     min_channels=0)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'The initial FLOPs is 0.0; cannot scale the '
                     'strength by it'):
    reg.set_strength_relative_to_cost(1.0)


def test_a_negative_strength_is_refused():
  with pytest.raises(errors.InvalidArgumentError) as context:
    morph_keras.ModelRegularizer(functional_model(), GAMMA,
                                 gamma_threshold=1e-3, strength=-1e-8)
  assert str(context.value) == (
      'Invalid value for argument `strength`. Expected a non-negative finite '
      'number. Received: strength=-1e-08')
  reg = morph_keras.ModelRegularizer(functional_model(), GAMMA,
                                     gamma_threshold=1e-3)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Received: strength=inf'):
    reg.set_strength(float('inf'))
  reg.set_strength(2e-9)
  assert reg.strength.numpy() == np.float32(2e-9)


# ---------- layers vanishing in cascade (520-model run, seed 1, Gamma).
# rebuild removes a layer whose every input vanished; the cost counts its
# group's channels as dead (morph_net.keras.vanishing).


def _dead_branch_before_a_dense():
  """x1 -> Dense a (4, no bias) -> BN (every gamma 0, beta kept) -> Dense b
  (3, no bias) -> BN -> concatenated with x2 -> logits (2)."""
  x1 = keras.Input((1,), name='x1')
  x2 = keras.Input((1,), name='x2')
  a = keras.layers.Dense(4, use_bias=False, name='a')(x1)
  a = keras.layers.BatchNormalization(name='bna')(a)
  b = keras.layers.Dense(3, use_bias=False, name='b')(a)
  b = keras.layers.BatchNormalization(name='bnb')(b)
  c = keras.layers.Concatenate(name='cat')([b, x2])
  model = keras.Model([x1, x2], keras.layers.Dense(2, name='logits')(c))
  _kill_batch_norm(model, 'bna')
  return model


def _kill_batch_norm(model, name):
  """Every gamma of batch norm `name` 0 (its betas 1, 2, ...: a constant)."""
  bn = model.get_layer(name)
  size = bn.gamma.shape[0]
  bn.gamma.assign(np.zeros(size, 'float32'))
  bn.beta.assign(np.arange(1, size + 1, dtype='float32'))


def _check_vanishing_cost(model, regularizer_class, flops, alive,
                          layers=None, **kwargs):
  """cost() == a fresh regularizer's on the rebuilt model == `flops` (and
  the rebuilt model's config FLOPs); alive_counts() == `alive`; `layers`:
  the rebuilt model's layers (when given)."""
  kwargs = kwargs or {'gamma_threshold': 1e-3}
  regularizer = morph_keras.ModelRegularizer(model, regularizer_class,
                                             **kwargs)
  assert float(regularizer.cost()) == flops
  assert regularizer.alive_counts() == alive
  assert structure_cost.StructureCost(regularizer)(alive) == flops
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  if layers is not None:
    assert [l.name for l in rebuilt.layers] == layers
  fresh = morph_keras.ModelRegularizer(rebuilt, GROUP_LASSO, threshold=1e-3)
  assert float(fresh.cost()) == flops
  assert config_flops.config_flops(rebuilt) == flops
  return regularizer, rebuilt


def test_a_layer_whose_inputs_vanished_vanishes_in_rebuild():
  """Group a is dead whole, so b reads only a constant and vanishes in
  rebuild with bnb (their constant is folded into logits' bias): the
  rebuilt model is logits on x2 alone, 2 x 1 x 2 = 4 FLOPs. b's channels
  count as dead: before, logits was costed at 2 x (3 + 1) x 2 = 16."""
  _check_vanishing_cost(_dead_branch_before_a_dense(), GAMMA, 4.0,
                        {'a': 0, 'b': 0}, ['x2', 'x1', 'logits'])


def test_a_cascade_of_two_layers_vanishes_in_the_cost():
  """a dead -> b and c vanish in cascade; d lives on x2: d 2 x 1 x 2 = 4,
  logits 2 x 2 x 2 = 8 (before: c 2 x 3 x 2 = 12, logits 2 x 4 x 2 =
  16)."""
  x1 = keras.Input((1,), name='x1')
  x2 = keras.Input((1,), name='x2')
  y = x1
  for name, width in (('a', 4), ('b', 3), ('c', 2)):
    y = keras.layers.Dense(width, use_bias=False, name=name)(y)
    y = keras.layers.BatchNormalization(name='bn' + name)(y)
  d = keras.layers.Dense(2, use_bias=False, name='d')(x2)
  d = keras.layers.BatchNormalization(name='bnd')(d)
  y = keras.layers.Concatenate(name='cat')([y, d])
  model = keras.Model([x1, x2], keras.layers.Dense(2, name='logits')(y))
  _kill_batch_norm(model, 'bna')
  _check_vanishing_cost(model, GAMMA, 12.0,
                        {'a': 0, 'b': 0, 'c': 0, 'd': 2})


def _branch_into_an_add(x1_width=4):
  """x1 -> a (4) -> bna (dead) -> b (3) -> bnb -> c (2) -> bnc, added to
  x1 -> e (2) -> bne; the sum -> logits (2). All Dense without bias."""
  x1 = keras.Input((x1_width,), name='x1')
  y = x1
  for name, width in (('a', 4), ('b', 3), ('c', 2)):
    y = keras.layers.Dense(width, use_bias=False, name=name)(y)
    y = keras.layers.BatchNormalization(name='bn' + name)(y)
  e = keras.layers.Dense(2, use_bias=False, name='e')(x1)
  e = keras.layers.BatchNormalization(name='bne')(e)
  y = keras.layers.Add(name='add')([y, e])
  model = keras.Model(x1, keras.layers.Dense(2, name='logits')(y))
  _kill_batch_norm(model, 'bna')
  return model


def test_a_branch_vanishing_into_an_add_whose_other_branch_lives():
  """b and c vanish (the Add passes e on); the group of c and e lives, so
  c keeps its alive count, but c reads b's dead group: e 2 x 4 x 2 = 16,
  logits 2 x 2 x 2 = 8 (before: c 2 x 3 x 2 = 12 more)."""
  _check_vanishing_cost(_branch_into_an_add(), GAMMA, 24.0,
                        {'a': 0, 'b': 0, 'c': 2, 'e': 2},
                        ['x1', 'e', 'bne', 'logits'])


def test_a_layer_that_vanishes_costs_nothing_where_its_group_lives():
  """Activation counts (one per output channel of a conv or matmul,
  whatever its inputs): c's output is in the live group of c and e, but c
  vanishes, so its matmul counts only while c has an input. The rebuilt
  model has e (2) and logits (2): 4 (before: b 3 and c 2 more)."""
  model = _branch_into_an_add()
  regularizer = morph_keras.ModelRegularizer(
      model, activation_regularizer.GammaActivationRegularizer,
      gamma_threshold=1e-3)
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  fresh = morph_keras.ModelRegularizer(
      rebuilt, activation_regularizer.GammaActivationRegularizer,
      gamma_threshold=1e-3)
  assert float(regularizer.cost()) == float(fresh.cost()) == 4.0
  assert regularizer.alive_counts() == {'a': 0, 'b': 0, 'c': 2, 'e': 2}


def test_a_nested_model_whose_inputs_vanished_vanishes_in_the_cost():
  """b and its batch norm inside a nested model read only the dead bna:
  the rebuilt model is logits on x2, 2 x 1 x 2 = 4 FLOPs."""
  inner_input = keras.Input((4,), name='inner_in')
  inner = keras.layers.Dense(3, use_bias=False, name='b')(inner_input)
  inner = keras.layers.BatchNormalization(name='bnb')(inner)
  nested = keras.Model(inner_input, inner, name='nested')
  x1 = keras.Input((1,), name='x1')
  x2 = keras.Input((1,), name='x2')
  a = keras.layers.Dense(4, use_bias=False, name='a')(x1)
  a = keras.layers.BatchNormalization(name='bna')(a)
  c = keras.layers.Concatenate(name='cat')([nested(a), x2])
  model = keras.Model([x1, x2], keras.layers.Dense(2, name='logits')(c))
  _kill_batch_norm(model, 'bna')
  _check_vanishing_cost(model, GAMMA, 4.0, {'a': 0, 'b': 0})


def test_a_dense_without_batch_norm_vanishes_in_the_cost():
  """Under Gamma a Dense without batch norm has no regularized channels;
  it still vanishes when its input does: logits 2 x 1 x 2 = 4 (before:
  2 x (3 + 1) x 2 = 16). It stays out of the structure."""
  x1 = keras.Input((1,), name='x1')
  x2 = keras.Input((1,), name='x2')
  a = keras.layers.Dense(4, use_bias=False, name='a')(x1)
  a = keras.layers.BatchNormalization(name='bna')(a)
  b = keras.layers.Dense(3, use_bias=False, name='b')(a)
  c = keras.layers.Concatenate(name='cat')([b, x2])
  model = keras.Model([x1, x2], keras.layers.Dense(2, name='logits')(c))
  _kill_batch_norm(model, 'bna')
  _check_vanishing_cost(model, GAMMA, 4.0, {'a': 0})


def _dead_input_before_a_gru():
  """x1 (5 steps) -> Dense a (4, no bias) -> BN -> GRU (2 units),
  concatenated with x2 -> logits (2)."""
  x1 = keras.Input((5, 1), name='x1')
  x2 = keras.Input((1,), name='x2')
  a = keras.layers.Dense(4, use_bias=False, name='a')(x1)
  a = keras.layers.BatchNormalization(name='bna')(a)
  g = keras.layers.GRU(2, name='gru')(a)
  c = keras.layers.Concatenate(name='cat')([g, x2])
  return keras.Model([x1, x2], keras.layers.Dense(2, name='logits')(c))


def test_a_recurrent_layer_whose_input_vanished_vanishes_in_the_cost():
  """GroupLasso prunes the GRU's units; a's kernel is 0, so the GRU reads
  only bna's constant and vanishes in rebuild: its loop and its units at
  logits count 0. The rebuilt model is logits on x2, 2 x 1 x 2 = 4."""
  model = _dead_input_before_a_gru()
  model.get_layer('a').kernel.assign(np.zeros((1, 4), 'float32'))
  _check_vanishing_cost(model, GROUP_LASSO, 4.0,
                        {'a': 0, 'gru': 0, 'logits': 2},
                        threshold=1e-3)


def test_a_recurrent_layer_keeping_its_units_vanishes_in_the_cost():
  """Gamma regularizers prune no units: the GRU keeps its 2, its loop is
  cut out of the analysis and its output is a constant source. bna is
  dead, so the GRU reads only a constant and vanishes: its loop and its
  units at logits count 0 (before: logits 2 x (2 + 1) x 2 = 12). The
  rebuilt model is logits on x2, 2 x 1 x 2 = 4; the GRU is no structure
  entry."""
  model = _dead_input_before_a_gru()
  _kill_batch_norm(model, 'bna')
  _check_vanishing_cost(model, GAMMA, 4.0, {'a': 0}, ['x2', 'x1', 'logits'])


def test_a_live_cascade_is_costed_as_before():
  """With bna alive nothing vanishes: a 2 x 1 x 4, b 2 x 4 x 3, logits
  2 x 4 x 2 = 48."""
  model = _dead_branch_before_a_dense()
  model.get_layer('bna').gamma.assign(np.ones(4, 'float32'))
  _check_vanishing_cost(model, GAMMA, 48.0, {'a': 4, 'b': 3})
