"""Tests of the LogisticSigmoidGating layer and its functional helpers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from morph_net.compat import keras as compat
from morph_net.probabilistic_gating import activation_gating as ag

keras = compat.get_keras()

LOG_ODDS = np.array([-2.0, -0.5, 0.0, 0.7, 2.0], np.float32)


def _built_gate(log_odds=LOG_ODDS, **kwargs):
  kwargs.setdefault('keep_first_channel_alive', False)
  layer = ag.LogisticSigmoidGating(**kwargs)
  layer.build((None, len(log_odds)))
  layer.log_odds.assign(log_odds)
  return layer


def _sample_masks(layer, count):
  sample = tf.function(lambda: tf.map_fn(
      lambda _: layer.get_mask(training=True), tf.range(count),
      fn_output_signature=tf.float32))
  return sample().numpy()


def test_straight_through_sample_mean_is_gate_probability():
  tf.random.set_seed(1)
  layer = _built_gate(temperature=1.0, straight_through=True)
  masks = _sample_masks(layer, 4000)
  np.testing.assert_array_equal(np.unique(masks), [0.0, 1.0])
  expected = 1.0 / (1.0 + np.exp(-LOG_ODDS))
  np.testing.assert_allclose(masks.mean(0), expected, atol=0.03)


def test_relaxed_sample_statistics_at_temperature_one():
  tf.random.set_seed(2)
  layer = _built_gate(temperature=1.0)
  masks = _sample_masks(layer, 4000)
  assert 0.0 < masks.min() and masks.max() < 1.0  # Relaxed, not binary.
  # The relaxed sample sigmoid(l + logistic noise) is above 1/2 exactly when
  # the Bernoulli sample is 1, so P(mask > 1/2) = sigmoid(l) ...
  expected = 1.0 / (1.0 + np.exp(-LOG_ODDS))
  np.testing.assert_allclose((masks > 0.5).mean(0), expected, atol=0.03)
  # ... and the mean follows the gate probability (equal at l = 0).
  means = masks.mean(0)
  assert np.all(np.diff(means) > 0)
  np.testing.assert_allclose(means[2], 0.5, atol=0.03)
  np.testing.assert_allclose(means, expected, atol=0.12)


def test_low_temperature_sample_is_almost_binary():
  tf.random.set_seed(3)
  layer = _built_gate(temperature=1e-3)
  masks = _sample_masks(layer, 500)
  assert np.mean((masks > 0.01) & (masks < 0.99)) < 0.01


def test_one_sample_per_channel_shared_over_batch_and_space():
  tf.random.set_seed(4)
  layer = _built_gate(temperature=1.0)
  outputs = layer(tf.ones((3, 4, 4, 5)), training=True).numpy()
  np.testing.assert_array_equal(
      outputs, np.broadcast_to(outputs[:1, :1, :1], outputs.shape))


def test_straight_through_forward_is_exact_and_gradient_non_zero():
  tf.random.set_seed(5)
  layer = _built_gate(np.zeros(16, np.float32), temperature=1.0,
                      straight_through=True)
  inputs = tf.ones((2, 3, 3, 16))
  with tf.GradientTape() as tape:
    outputs = layer(inputs, training=True)
    loss = tf.reduce_sum(outputs)
  values = np.unique(outputs.numpy())
  assert set(values) == {0.0, 1.0}
  gradient = tape.gradient(loss, layer.log_odds)
  assert np.all(np.abs(gradient.numpy()) > 0)


def test_inference_mask_is_deterministic():
  layer = _built_gate()
  inputs = tf.random.normal((2, 5))
  first = layer(inputs, training=False).numpy()
  for _ in range(3):
    np.testing.assert_array_equal(layer(inputs, training=False).numpy(), first)
  np.testing.assert_array_equal(layer(inputs).numpy(), first)  # Default mode.
  np.testing.assert_array_equal(
      first, inputs.numpy() * (LOG_ODDS > 0).astype(np.float32))


def test_inference_mask_is_differentiable_for_regularizers():
  layer = _built_gate()
  with tf.GradientTape() as tape:
    mask = layer.get_mask(training=False)
  np.testing.assert_array_equal(mask.numpy(), (LOG_ODDS > 0).astype(float))
  probability = 1.0 / (1.0 + np.exp(-LOG_ODDS))
  np.testing.assert_allclose(tape.gradient(mask, layer.log_odds).numpy(),
                             probability * (1 - probability), rtol=1e-5)


def test_soft_mask_for_inference():
  layer = _built_gate(soft_mask_for_inference=True)
  probability = 1.0 / (1.0 + np.exp(-LOG_ODDS))
  np.testing.assert_allclose(layer.get_mask(False).numpy(),
                             probability * (LOG_ODDS > 0), rtol=1e-6)


def test_keep_first_channel_alive():
  layer = _built_gate(np.full(4, -30.0, np.float32),
                      keep_first_channel_alive=True, temperature=1.0)
  np.testing.assert_array_equal(layer.get_mask(False).numpy(), [1, 0, 0, 0])
  for _ in range(5):
    np.testing.assert_array_equal(layer.get_mask(True).numpy()[0], 1.0)


def test_other_channel_axis():
  layer = ag.LogisticSigmoidGating(axis=1, keep_first_channel_alive=False)
  layer.build((None, 3, 4, 4))
  layer.log_odds.assign([1.0, -1.0, 1.0])
  outputs = layer(tf.ones((2, 3, 4, 4)), training=False).numpy()
  np.testing.assert_array_equal(outputs[:, 1], 0.0)
  np.testing.assert_array_equal(outputs[:, 0], 1.0)


def test_annealing_with_own_step_counter():
  layer = _built_gate(temperature=1.0, annealing_rate=10)
  assert layer.step is not None and not layer.step.trainable
  np.testing.assert_allclose(layer.temperature_at_step().numpy(), 1.0)
  for _ in range(10):
    layer(tf.ones((1, 5)), training=True)
  layer(tf.ones((1, 5)), training=False)  # Inference does not count.
  assert int(layer.step.numpy()) == 10
  np.testing.assert_allclose(layer.temperature_at_step().numpy(), 0.1,
                             rtol=1e-5)


def test_annealing_with_global_step():
  step = tf.Variable(0, dtype=tf.int64)
  layer = _built_gate(temperature=2.0, annealing_rate=100, global_step=step)
  assert layer.step is None
  assert len(layer.weights) == 1  # The global step is not a layer weight.
  step.assign(200)
  np.testing.assert_allclose(layer.temperature_at_step().numpy(), 0.02,
                             rtol=1e-5)


def test_annealing_counts_fit_steps():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((4,))
  outputs = keras.layers.Dense(1)(ag.LogisticSigmoidGating(
      annealing_rate=5, temperature=1.0, name='gate')(inputs))
  model = keras.Model(inputs, outputs)
  model.compile('sgd', 'mse')
  model.fit(np.ones((12, 4)), np.ones((12, 1)), batch_size=4, epochs=2,
            verbose=0)
  assert int(model.get_layer('gate').step.numpy()) == 6


@pytest.mark.parametrize('kwargs, message', [
    ({'temperature': 0.0}, 'temperature'),
    ({'annealing_rate': -1}, 'annealing_rate'),
])
def test_invalid_arguments(kwargs, message):
  with pytest.raises(ValueError, match='Invalid value for argument `%s`' %
                     message):
    ag.LogisticSigmoidGating(**kwargs)


def test_unknown_channel_size_raises():
  layer = ag.LogisticSigmoidGating(name='g')
  with pytest.raises(ValueError, match='static size on the channel axis'):
    layer.build((None, None))


@pytest.mark.parametrize('log_odds_init', [
    1.5, 'zeros', {'class_name': 'RandomNormal',
                   'config': {'mean': 3.0, 'stddev': 0.1, 'seed': 1}}])
def test_get_config_round_trip(log_odds_init):
  layer = ag.LogisticSigmoidGating(
      axis=-1, temperature=0.3, straight_through=True,
      log_odds_init=log_odds_init, soft_mask_for_inference=True,
      keep_first_channel_alive=False, annealing_rate=50, seed=7, name='g')
  config = layer.get_config()
  clone = ag.LogisticSigmoidGating.from_config(config)
  assert clone.get_config() == config
  for key in ('temperature', 'straight_through', 'soft_mask_for_inference',
              'keep_first_channel_alive', 'annealing_rate', 'seed'):
    assert getattr(clone, key) == getattr(layer, key)
  clone.build((None, 6))
  assert clone.log_odds.shape == (6,)


def test_keras_file_save_and_load(tmp_path):
  inputs = keras.Input((4, 4, 3))
  y = keras.layers.Conv2D(6, 3, name='conv')(inputs)
  y = ag.LogisticSigmoidGating(name='gate', temperature=0.5,
                               straight_through=True, annealing_rate=10)(y)
  model = keras.Model(inputs, y)
  model.get_layer('gate').log_odds.assign([3.0, -1.0, 2.0, -4.0, 1.0, -2.0])
  path = str(tmp_path / 'gated.keras')
  model.save(path)
  x = np.random.RandomState(0).randn(2, 4, 4, 3).astype(np.float32)
  for custom_objects in (None, {'LogisticSigmoidGating':
                                ag.LogisticSigmoidGating}):
    loaded = keras.models.load_model(path, custom_objects=custom_objects)
    gate = loaded.get_layer('gate')
    assert isinstance(gate, ag.LogisticSigmoidGating)
    assert gate.get_config() == model.get_layer('gate').get_config()
    np.testing.assert_allclose(loaded(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-6)


def test_functional_helpers_build_keras_models():
  inputs = keras.Input((6, 6, 3))
  y = keras.layers.Conv2D(4, 3)(inputs)
  y = ag.logistic_sigmoid_gating(y, -1, None, log_odds_init=1.0, scope='g1')
  y = ag.gated_relu_activation(temperature=0.5)(y)
  y = keras.layers.Conv2D(5, 1)(y)
  y = ag.gated_batch_norm(straight_through=True)(y, scale=False)
  dense = ag.add_gating_to_fn(keras.layers.Dense(3), log_odds_init=-1.0)
  outputs = dense(keras.layers.Flatten()(y))
  model = keras.Model(inputs, outputs)
  gates = [l for l in model.layers
           if isinstance(l, ag.LogisticSigmoidGating)]
  assert [g.log_odds.shape[0] for g in gates] == [4, 4, 5, 3]
  assert gates[0].name == 'g1' and gates[1].temperature == 0.5
  assert gates[2].straight_through
  assert any(isinstance(l, keras.layers.ReLU) for l in model.layers)
  assert any(isinstance(l, keras.layers.BatchNormalization)
             for l in model.layers)
  x = np.ones((2, 6, 6, 3), np.float32)
  # The last gate is shut except channel 0 (kept alive).
  outputs = model(x, training=False).numpy()
  np.testing.assert_array_equal(outputs[:, 1:], 0.0)


def test_functional_form_with_fixed_mode():
  inputs = keras.Input((5,))
  outputs = ag.logistic_sigmoid_gating(inputs, -1, is_training=False,
                                       log_odds_init=-3.0,
                                       keep_first_channel_alive=False)
  model = keras.Model(inputs, outputs)
  # Inference mask (all shut) even when the model trains.
  np.testing.assert_array_equal(
      model(np.ones((1, 5), np.float32), training=True).numpy(), 0.0)


_LEGACY_SCRIPT = textwrap.dedent('''
    import os, numpy as np, tensorflow as tf, tf_keras
    from morph_net.probabilistic_gating import activation_gating as ag
    from morph_net.network_regularizers import logistic_sigmoid_regularizer as lsr
    assert ag.keras is tf_keras
    inputs = tf_keras.Input((6, 6, 3))
    y = tf_keras.layers.Conv2D(4, 3, name='conv1')(inputs)
    y = ag.LogisticSigmoidGating(name='gate1', straight_through=True,
                                 temperature=1.0,
                                 keep_first_channel_alive=False)(y)
    y = tf_keras.layers.Conv2D(5, 3, name='conv2')(y)
    model = tf_keras.Model(inputs, y)
    gate = model.get_layer('gate1')
    assert isinstance(gate, tf_keras.layers.Layer)
    gate.log_odds.assign([9.0, 9.0, -9.0, -9.0])
    sample = gate(tf.ones((1, 2, 2, 4)), training=True).numpy()
    assert set(np.unique(sample)) <= {0.0, 1.0}
    fn = tf.compat.v1.wrap_function(lambda t: model(t, training=False),
                                    [tf.TensorSpec((1, 6, 6, 3))])
    with fn.graph.as_default():
      reg = lsr.LogisticSigmoidFlopsRegularizer(
          [t.op for t in fn.graph.outputs])
      cost = reg.get_cost()
    assert len(reg.op_regularizer_manager.source_ops) == 1
    # conv1: 2*16*9*3*2 alive; conv2: 2*4*9*2*5.
    assert fn.prune(feeds=[], fetches=cost)().numpy() == 1728 + 720
    path = os.path.join(os.environ['OUT_DIR'], 'legacy.keras')
    model.save(path)
    loaded = tf_keras.models.load_model(path)
    x = np.ones((1, 6, 6, 3), np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy())
    print('LEGACY_OK')
''')


def test_tf_keras_legacy_mode(tmp_path):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', OUT_DIR=str(tmp_path),
             TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  result = subprocess.run([sys.executable, '-c', _LEGACY_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=240,
                          check=False)
  assert 'LEGACY_OK' in result.stdout, result.stderr[-3000:]


def test_tf1_graph_training_default_and_original_op():
  # In a TF1 graph an unset mode means training (the original's default), and
  # the training sample is the original's single LogisticSigmoidGating op,
  # fed by the mask_logits read and copied by an Identity.
  graph = tf.Graph()
  with graph.as_default():
    inputs = tf.ones([1, 4, 4, 3])
    outputs = ag.gated_relu_activation(log_odds_init=20.0)(inputs)
    gating = [op for op in graph.get_operations()
              if op.type == 'LogisticSigmoidGating']
    assert len(gating) == 1
    read = gating[0].inputs[0]
    assert read.op.type == 'ReadVariableOp'
    assert read.op.inputs[0].op.name.endswith('mask_logits')
    assert [c.type for c in gating[0].outputs[0].consumers()] == ['Identity']
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      np.testing.assert_array_equal(session.run(outputs), np.ones([1, 4, 4, 3]))
  # A fixed mode is kept: inference builds no sampling op.
  graph = tf.Graph()
  with graph.as_default():
    ag.logistic_sigmoid_gating(tf.ones([1, 4, 4, 3]), -1, False)
    assert not [op for op in graph.get_operations()
                if op.type == 'LogisticSigmoidGating']
