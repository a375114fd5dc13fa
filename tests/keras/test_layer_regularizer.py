"""The layer-level regularizer, on whichever Keras backend runs the tests.

CI runs this file under TensorFlow and, in virtual environments without
TensorFlow, under KERAS_BACKEND=jax and KERAS_BACKEND=torch (PyTorch's
CPU-only wheel; `scripts/install.sh torch`, docs/guides/backends.md). The
data-parallel tests run on JAX only (keras.distribution). Costs and terms
are counted by hand (`layer_models`).
"""

import importlib.util
import os
import subprocess
import sys

import keras
from keras import ops
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import layer_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import layer_models

L = keras.layers
_FLOPS = 'GammaFlopsRegularizer'
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))


def _regularizer(model, name=_FLOPS, **kwargs):
  kwargs.setdefault('gamma_threshold', 1e-3)
  return layer_regularizer.LayerRegularizer(model, name, **kwargs)


def _zero(layer, channels):
  gamma = keras.ops.convert_to_numpy(layer.gamma).copy()
  gamma[channels] = 0.0
  layer.gamma.assign(gamma)


def _kill_some(model):
  """Group {stem, res}: 0-2 dead in stem_bn, 0-1 in res_bn: 6 alive (the
  max keeps channel 2); group {down}: 0-1 dead: 4 alive."""
  _zero(model.get_layer('stem_bn'), [0, 1, 2])
  _zero(model.get_layer('res_bn'), [0, 1])
  _zero(model.get_layer('down_bn'), [0, 1])


def test_cost_and_term_by_hand_before_and_after_zeroing_gammas():
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model)
  assert float(regularizer.cost()) == layer_models.RESIDUAL_CNN_FLOPS
  assert float(regularizer.term()) == layer_models.RESIDUAL_CNN_TERM
  assert regularizer.alive_counts() == {'stem': 8, 'res': 8, 'down': 6}
  _kill_some(model)
  assert regularizer.alive_counts() == {'stem': 6, 'res': 6, 'down': 4}
  # stem 2*64*9*3*6 + res 2*64*9*6*6 + down 2*16*9*6*4 + logits 2*4*4.
  assert float(regularizer.cost()) == 20736 + 41472 + 6912 + 32
  assert regularizer.name == 'GammaFlops'
  assert regularizer.cost_name == 'FLOPs'


def test_activation_count_counts_alive_output_channels():
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model, 'GammaActivationRegularizer')
  assert regularizer.cost_name == 'Activations'
  # stem 8 + res 8 + down 6 + logits 4 output channels.
  assert float(regularizer.cost()) == 26
  # Out x sum(r_out): stem 8, res 8, down 6 (logits: kept, 0).
  assert float(regularizer.term()) == 22
  _kill_some(model)
  assert float(regularizer.cost()) == 6 + 6 + 4 + 4
  x = keras.Input((5, 3))
  y = L.BatchNormalization(name='bn')(L.Dense(4, name='fc')(x))
  lstm = keras.Model(x, L.LSTM(3, name='lstm')(y))
  # fc 4; the LSTM counts none (its rule's activation_ops, as the graph
  # engine: tests/keras/test_layer_activation_counts.py).
  assert float(_regularizer(lstm, 'GammaActivationRegularizer').cost()) == 4
  y = L.MultiHeadAttention(2, 3, name='mha')(y, y)
  y = L.BatchNormalization(name='post_bn')(L.Dense(5, name='post')(y))
  # fc 4 (the attention's hidden size: kept); the attention counts the
  # output channels of the ops the graph engine traces it to: query, key
  # and value 2 heads x 3, the scores 5 (key steps), the attention times
  # the values 3, the output 4 (tests/keras/test_layer_attention.py); post
  # 5, logits 2.
  attention = keras.Model(x, L.Dense(2, name='logits')(y))
  assert float(_regularizer(attention, 'GammaActivationRegularizer').cost(
      )) == 4 + (6 + 6 + 6 + 5 + 3 + 4) + 5 + 2


def test_model_size_counts_kernels():
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model, 'GammaModelSizeRegularizer')
  # 9*3*8 + 9*8*8 + 9*8*6 + 6*4 weights (no biases, as the graph engine).
  assert float(regularizer.cost()) == 216 + 576 + 432 + 24
  assert regularizer.cost_name == 'ModelSize'


def test_every_channel_dead_keeps_one_in_a_connecting_group():
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model)
  _zero(model.get_layer('down_bn'), list(range(6)))
  assert regularizer.alive_counts()['down'] == 1
  assert regularizer.connecting_layers == ['down', 'res', 'stem']
  no_minimum = _regularizer(model, min_channels=0)
  assert no_minimum.alive_counts()['down'] == 0


def _fit_one_step(model, regularizer):
  """One SGD step (lr 0.1) whose only loss is the MorphNet loss."""
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(
                    lambda y_true, y_pred: ops.zeros_like(y_pred[:, 0])))
  x = np.ones((4, 8, 8, 3), np.float32)
  y = np.zeros((4, 4), np.float32)
  model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def expected_gammas_after_one_step(strength):
  """{batch norm: gamma after `_fit_one_step`} from the term's gradient.

  d term / d r of a channel of group {stem, res}: stem 1152*3 + res
  1152*8*2 + down 288*6 = 23616; of group {down}: down 288*8 + logits 2*4
  = 2312. At the tie (every gamma 1) the group max gives the whole gradient
  to its first batch norm (stem_bn), on every backend.
  """
  return {'stem_bn': 1.0 - 0.1 * strength * 23616,
          'res_bn': 1.0,
          'down_bn': 1.0 - 0.1 * strength * 2312}


def test_fit_with_wrap_loss_shrinks_gammas_by_the_term_gradient():
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model, strength=1e-4)
  _fit_one_step(model, regularizer)
  for name, want in expected_gammas_after_one_step(1e-4).items():
    gamma = keras.ops.convert_to_numpy(model.get_layer(name).gamma)
    np.testing.assert_allclose(gamma, np.full([gamma.size], want),
                               rtol=1e-6)


def test_rebuild_keeps_the_alive_channels_and_the_cost():
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model)
  _kill_some(model)
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('stem').filters == 6
  assert rebuilt.get_layer('down').filters == 4
  fresh = _regularizer(rebuilt)
  assert float(fresh.cost()) == float(regularizer.cost()) == 69152.0
  assert fresh.alive_counts() == {'stem': 6, 'res': 6, 'down': 4}


def test_tie_gradient_goes_to_the_first_argument():
  ones = np.ones([3], np.float32)
  backend = keras.backend.backend()
  if backend == 'jax':
    import jax  # pylint: disable=g-import-not-at-top
    grads = jax.grad(lambda u, v: layer_regularizer.combine_max(u, v).sum(),
                     argnums=(0, 1))(ones, ones)
  elif backend == 'torch':
    import torch  # pylint: disable=g-import-not-at-top
    u = torch.ones(3, requires_grad=True)
    v = torch.ones(3, requires_grad=True)
    layer_regularizer.combine_max(u, v).sum().backward()
    grads = (u.grad, v.grad)
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    u, v = tf.constant(ones), tf.constant(ones)
    with tf.GradientTape() as tape:
      tape.watch([u, v])
      total = tf.reduce_sum(layer_regularizer.combine_max(u, v))
    grads = tape.gradient(total, [u, v])
  assert [keras.ops.convert_to_numpy(g).tolist() for g in grads] == [
      [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_a_layer_with_flops_but_no_cost_hook_is_refused():
  x = keras.Input((5, 3))
  # Contracts the steps, not the channels: no cost hook knows it.
  y = L.EinsumDense('abc,bd->adc', output_shape=(4, 3), name='mix')(x)
  y = L.BatchNormalization(name='bn')(L.Dense(6, name='fc')(y))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  with pytest.raises(errors.UnsupportedModelError) as e:
    _regularizer(model)
  assert str(e.value) == (
      "Layer 'mix' (EinsumDense) multiplies channels, but its layer "
      'rule EinsumDenseRule has no cost hook, so the layer-level regularizer '
      "(Keras backend %r) cannot cost it and will not leave it out "
      'silently. Give the rule a `costed_ops` method (see '
      'morph_net.surgery.layer_cost) and register it with '
      'morph_net.surgery.register_layer_rule, or use the TensorFlow '
      'backend, whose graph engine costs the traced ops.' %
      keras.backend.backend())


def test_a_bidirectional_lstm_is_costed_from_its_config():
  # The prototype of issue 25 left this layer out (880 FLOPs, not 14,320).
  x = keras.Input((5, 3))
  y = L.Conv1D(6, 1, use_bias=False, name='conv')(x)
  y = L.BatchNormalization(name='bn')(y)
  y = L.Bidirectional(L.LSTM(4), name='bilstm')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y), name='bilstm')
  regularizer = _regularizer(model)
  # conv 2*5*3*6; per direction 2*5*4 gates*4 units*(6 + 4); logits 2*8*2.
  assert float(regularizer.cost()) == 180 + 2 * 1600 + 32
  # conv 10*(3*6); per direction kernel 2*5*4*(4 units*6) (the units are
  # not regularized).
  assert float(regularizer.term()) == 180 + 2 * 960
  _zero(model.get_layer('bn'), [0, 1])
  assert regularizer.alive_counts() == {'conv': 4}
  assert float(regularizer.cost()) == 120 + 2 * 1280 + 32


def test_an_einsum_dense_over_the_last_axis_is_a_dense():
  x = keras.Input((5, 3))
  y = L.EinsumDense('abc,cd->abd', output_shape=(5, 6), name='proj')(x)
  y = L.BatchNormalization(name='bn')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(L.Flatten()(y)))
  regularizer = _regularizer(model)
  # proj 2*5*3*6; logits 2*(5*6)*2 (the flatten repeats the group 5 times).
  assert float(regularizer.cost()) == 180 + 120
  _zero(model.get_layer('bn'), [0, 1, 2])
  assert regularizer.alive_counts() == {'proj': 3}
  assert float(regularizer.cost()) == 90 + 60


def test_unsupported_regularizer_and_arguments_are_refused():
  model = layer_models.residual_cnn()
  with pytest.raises(errors.InvalidArgumentError) as e:
    _regularizer(model, 'GammaMemoryRegularizer')
  assert str(e.value) == (
      'Invalid value for argument `regularizer_class` of the layer-level '
      "regularizer (Keras backend %r). Expected one of "
      'GammaActivationRegularizer, GammaFlopsRegularizer, '
      'GammaModelSizeRegularizer, GroupLassoActivationRegularizer, '
      'GroupLassoFlopsRegularizer, GroupLassoModelSizeRegularizer, '
      'LogisticSigmoidFlopsRegularizer, LogisticSigmoidModelSizeRegularizer '
      "(a class or its name). Received: regularizer_class="
      "'GammaMemoryRegularizer'. "
      'Other families and resources need the TensorFlow backend, whose '
      'graph engine supports them.' % keras.backend.backend())
  with pytest.raises(errors.InvalidArgumentError) as e:
    layer_regularizer.LayerRegularizer(model, _FLOPS, threshold=0.1)
  assert str(e.value) == (
      'Invalid arguments for GammaFlopsRegularizer in the layer-level '
      "regularizer: it takes gamma_threshold (required). Received: "
      "['threshold']")


def test_a_model_without_batch_norm_has_no_sources():
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(5, 3, name='conv')(x)
  model = keras.Model(x, L.Dense(2, name='logits')(L.Flatten()(y)),
                      name='plain')
  with pytest.raises(errors.NoSourceOpsError) as e:
    _regularizer(model)
  assert str(e.value) == (
      "Model 'plain' has no channel group the layer-level "
      'GammaFlopsRegularizer can regularize: it needs a BatchNormalization '
      '(with scale=True) on channels that rebuild can narrow. Add batch '
      'norms after the convolutions.')


def test_channel_map_refuses_an_unknown_space():
  from morph_net.surgery import spaces  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.UnsupportedModelError) as e:
    layer_regularizer.channel_map(spaces.Dead(3), spaces.GroupTable(), {})
  assert str(e.value) == (
      'The layer-level regularizer cannot map channel space Dead(channels=3) '
      '(Dead) to channel groups. Use the TensorFlow backend, whose graph '
      'engine reads the traced ops.')


_WITHOUT_TF = """
import sys
import morph_net.surgery
import morph_net.keras
from morph_net.keras import ModelRegularizer
from morph_net.keras import layer_regularizer
assert ModelRegularizer is layer_regularizer.LayerRegularizer
assert 'tensorflow' not in sys.modules, 'tensorflow was imported'
try:
  from morph_net.keras import TracedModel
except ImportError as e:
  print(type(e).__name__, e)
"""


@pytest.mark.skipif(keras.backend.backend() == 'tensorflow',
                    reason='checks the imports of another backend')
def test_imports_do_not_need_tensorflow():
  env = dict(os.environ, PYTHONPATH=_ROOT)
  result = subprocess.run([sys.executable, '-c', _WITHOUT_TF], env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == (
      'MissingDependencyError morph_net.keras.TracedModel needs the '
      "TensorFlow graph engine, and the Keras backend is %r. On this backend "
      'use morph_net.keras.ModelRegularizer (the layer-level engine) and '
      'morph_net.surgery.rebuild; or set KERAS_BACKEND=tensorflow (with '
      'TensorFlow installed) for TracedModel.' % keras.backend.backend())


@pytest.mark.skipif(keras.backend.backend() != 'jax',
                    reason='keras.distribution runs on JAX')
def test_fit_under_data_parallel_on_two_devices():
  env = dict(os.environ, PYTHONPATH=_ROOT,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  result = subprocess.run(
      [sys.executable, os.path.join(_HERE, 'layer_distribution_check.py')],
      env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().splitlines()[-1] == 'devices 2 gammas ok'


def test_save_alive_counts_writes_the_structure_files(tmp_path):
  from morph_net.structure import structure_files  # pylint: disable=g-import-not-at-top
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model)
  _kill_some(model)
  path = regularizer.save_alive_counts(str(tmp_path), 7)
  assert path == str(tmp_path / 'learned_structure' / 'alive_7')
  assert structure_files.read_structure(path) == {
      'stem': 6, 'res': 6, 'down': 4}
  with open(tmp_path / 'learned_structure' / 'alive') as f:
    assert f.read() == '{\n  "down": 4,\n  "res": 6,\n  "stem": 6\n}'


@pytest.mark.skipif(importlib.util.find_spec('tensorflow') is not None,
                    reason='tf.io.gfile reads remote paths')
def test_a_remote_structure_file_needs_tensorflow():
  from morph_net.structure import structure_files  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.MissingDependencyError) as e:
    structure_files.read_structure('gs://bucket/alive')
  assert str(e.value) == (
      'Reading gs://bucket/alive needs TensorFlow (tf.io.gfile reads remote '
      'paths); install it, or copy the file to a local path.')


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.skipif(keras.backend.backend() != 'jax',
                    reason='keras.distribution.initialize runs on JAX')
def test_fit_in_two_processes_on_localhost():
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=_ROOT)
  env.pop('XLA_FLAGS', None)  # One CPU device per process.
  script = os.path.join(_HERE, 'layer_multi_process_check.py')
  processes = [subprocess.Popen(
      [sys.executable, script, str(i), str(port)], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in processes]
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
  assert [out.strip().splitlines()[-1] for out, _ in outputs] == [
      'process 0 of 2, devices 2 gammas ok',
      'process 1 of 2, devices 2 gammas ok']


class _AssignAfterFirstStep(keras.callbacks.Callback):

  def __init__(self, regularizer, strength):
    super().__init__()
    self.regularizer, self.value = regularizer, strength

  def on_train_batch_end(self, batch, logs=None):
    if batch == 0:
      self.regularizer.strength.assign(self.value)


def test_a_strength_assigned_during_fit_applies_from_the_next_step():
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model, strength=1e-4)
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(
                    lambda y_true, y_pred: ops.zeros_like(y_pred[:, 0])))
  model.fit(np.ones((8, 8, 8, 3), np.float32), np.zeros((8, 4), np.float32),
            batch_size=4, epochs=1, verbose=0,
            callbacks=[_AssignAfterFirstStep(regularizer, 2e-4)])
  # Step 1 at 1e-4 moves stem_bn (first of the tie); step 2 at 2e-4 moves
  # res_bn, now the group's max (see expected_gammas_after_one_step).
  want = {'stem_bn': 1.0 - 0.1 * 1e-4 * 23616,
          'res_bn': 1.0 - 0.1 * 2e-4 * 23616,
          'down_bn': 1.0 - 0.1 * 1e-4 * 2312 - 0.1 * 2e-4 * 2312}
  for name, value in want.items():
    gamma = keras.ops.convert_to_numpy(model.get_layer(name).gamma)
    np.testing.assert_allclose(gamma, np.full([gamma.size], value),
                               rtol=1e-6)


def test_cost_target_callback_sets_the_strength_in_fit():
  from morph_net.keras import cost_target  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = _regularizer(model)
  callback = cost_target.CostTargetCallback(
      regularizer, target_cost=0.5 * regularizer.initial_cost, lead_steps=0)
  model.compile(optimizer='sgd', loss=regularizer.wrap_loss('mse'))
  model.fit(np.ones((8, 8, 8, 3), np.float32), np.zeros((8, 4), np.float32),
            batch_size=4, epochs=1, verbose=0, callbacks=[callback])
  strength = float(keras.ops.convert_to_numpy(regularizer.strength))
  assert strength == np.float32(callback.controller.strength)
  assert strength > 0.1 / regularizer.initial_cost  # Raised from the start.


def _squeeze_excite_model():
  from morph_net.testing import custom_layers  # pylint: disable=g-import-not-at-top
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(8, 1, use_bias=False, name='conv')(x)
  y = L.BatchNormalization(name='bn')(y)
  y = custom_layers.SqueezeExcite(name='se')(y)  # Bottleneck 8 // 4 = 2.
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='se_model')


def test_a_squeeze_excite_layer_is_costed_by_its_registered_rule():
  from morph_net.surgery import layer_rules  # pylint: disable=g-import-not-at-top
  from morph_net.testing import custom_layers  # pylint: disable=g-import-not-at-top
  rules = layer_rules.get_layer_rules().copy()
  custom_layers.register_squeeze_excite(rules)
  model = _squeeze_excite_model()
  regularizer = _regularizer(model, layer_rules=rules)
  # conv 2*16*3*8; squeeze 2*8*2 and excite 2*2*8 (the bottleneck keeps
  # its 2 channels); logits 2*8*2.
  assert float(regularizer.cost()) == 768 + 32 + 32 + 32
  # conv 32*(3*8); squeeze 2*(2*8) and excite 2*(2*8) (bottleneck alive,
  # not regularized); logits 2*(2*8).
  assert float(regularizer.term()) == 768 + 32 + 32 + 32
  _zero(model.get_layer('bn'), [0, 1, 2])
  assert regularizer.alive_counts() == {'conv': 5}
  assert float(regularizer.cost()) == 480 + 20 + 20 + 20
  size = _regularizer(model, 'GammaModelSizeRegularizer', layer_rules=rules)
  assert float(size.cost()) == 3 * 5 + 5 * 2 + 2 * 5 + 5 * 2


def test_a_fixed_side_on_a_depthwise_op_is_refused():
  from morph_net.surgery import layer_rules  # pylint: disable=g-import-not-at-top
  from morph_net.testing import custom_layers  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import layer_cost  # pylint: disable=g-import-not-at-top

  class FixedDepthwiseRule(custom_layers.SqueezeExciteRule):

    def costed_ops(self, call):
      return [layer_cost.CostedOp('gate', layer_cost.Fixed(2),
                                  call.output_space, 2.0, 1.0, True)]

  rules = layer_rules.get_layer_rules().copy()
  rules.register(custom_layers.SqueezeExcite, FixedDepthwiseRule())
  with pytest.raises(errors.UnsupportedModelError) as e:
    _regularizer(_squeeze_excite_model(), layer_rules=rules)
  assert str(e.value) == (
      "Layer 'se' (SqueezeExcite): its cost hook gives op 'gate' fixed "
      'channels on a depthwise op; the layer-level regularizer costs a fixed '
      'side only on a non-depthwise op whose other side is channels of the '
      'model. Fix the costed_ops of its layer rule.')


def _attention_model():
  x = keras.Input((5, 3))
  y = L.BatchNormalization(name='bn')(L.Dense(6, name='fc')(x))
  y = L.MultiHeadAttention(2, 3, name='mha')(y, y)
  y = L.BatchNormalization(name='post_bn')(L.Dense(5, name='post')(y))
  y = L.Flatten(name='flatten')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='attention')


def test_multi_head_attention_is_costed_from_its_config():
  model = _attention_model()
  regularizer = _regularizer(model)
  # fc 2*5*3*6; per head (2): query, key, value 2*5*3*6 each, output
  # 2*5*3*6, products 2*5*5*(3+3); post 2*5*6*5; logits 2*(5*5)*2.
  assert float(regularizer.cost()) == 180 + 2 * (4 * 180 + 300) + 300 + 100
  # fc's group is the hidden size of the attention: kept (no batch norm of
  # its own, as in the graph engine); post's is regularized: post 10*(6*5),
  # logits 2*(2*5*5).
  assert float(regularizer.term()) == 300 + 100
  _zero(model.get_layer('bn'), [0, 1, 2])
  _zero(model.get_layer('post_bn'), [0, 1])
  assert regularizer.alive_counts() == {'fc': 6, 'post': 3}
  assert float(regularizer.cost()) == 180 + 2 * (4 * 180 + 300) + 180 + 60
  # fc 3*6; per head q, k, v 6*3 each, output 3*6; post 6*3; logits 15*2.
  size = _regularizer(model, 'GammaModelSizeRegularizer')
  assert float(size.cost()) == 18 + 2 * 72 + 18 + 30
  # Under GroupLasso the heads and the hidden size are pruned
  # (test_layer_attention.py).
