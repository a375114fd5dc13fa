"""Training with the layer-level engine, on whichever Keras backend runs.

CI runs this file under TensorFlow and, without TensorFlow, under
KERAS_BACKEND=jax and KERAS_BACKEND=torch (docs/guides/backends.md): the
cost metric in `fit`'s logs, the structure export, `StructureCost` of the
exported structure against a fresh regularizer on the rebuilt model, the
rescue term and `CostTargetCallback` with its lead cost and rescue. Values
are counted by hand on `layer_models.residual_cnn` (group {stem, res}: 8
channels, group {down}: 6): with `a` and `d` channels alive, its FLOPs are
stem 3456 a + res 1152 a^2 + down 288 a d + logits 8 d.
"""

import os
import subprocess
import sys

import keras
from keras import ops
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import callbacks
from morph_net.keras import cost_target
from morph_net.keras import layer_regularizer
from morph_net.keras import layer_structure_cost
from morph_net.structure import structure_files
from morph_net.surgery import rebuild
from morph_net.testing import layer_models

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
_ON_TF = keras.backend.backend() == 'tensorflow'


def _flops(a, d):
  return 3456 * a + 1152 * a * a + 288 * a * d + 8 * d


def _set(layer, channels, value):
  gamma = keras.ops.convert_to_numpy(layer.gamma).copy()
  gamma[channels] = value
  layer.gamma.assign(gamma)


@keras.saving.register_keras_serializable(package='morph_net_tests')
def _zero_loss(y_true, y_pred):
  del y_true
  return ops.zeros_like(y_pred[:, 0])


def _data(examples=8):
  return (np.ones((examples, 8, 8, 3), np.float32),
          np.zeros((examples, 4), np.float32))


# One SGD step (lr 0.1) moves a gamma of group {stem, res} (the first batch
# norm at a tie) by 0.1 x strength x 23616 and one of {down} by
# 0.1 x strength x 2312 (test_layer_regularizer.py): at this strength, by
# 0.5 and 0.5 x 2312 / 23616.
_STRENGTH = 5.0 / 23616.0


def _dying_model():
  """residual_cnn where one step kills channels 0-2 of {stem, res}: stem_bn
  0.4 (-> -0.1, under the threshold 0.15), res_bn 0."""
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=0.15,
      strength=_STRENGTH)
  _set(model.get_layer('stem_bn'), [0, 1, 2], 0.4)
  _set(model.get_layer('res_bn'), [0, 1, 2], 0.0)
  return model, regularizer


def _term(group_sum, alive, down_gamma):
  """The term of residual_cnn with group {stem, res} summing to
  `group_sum` over `alive` channels and every down_bn gamma `down_gamma`."""
  down_sum = 6 * down_gamma
  return (1152 * 3 * group_sum + 1152 * 2 * alive * group_sum +
          288 * (alive * down_sum + 6 * group_sum) + 2 * 4 * down_sum)


class _StopAfterFirstStep(keras.callbacks.Callback):
  """Sets the strength to 0 after the first step (else the next step of
  |gamma|'s gradient carries the dead gammas back across 0)."""

  def __init__(self, regularizer):
    super().__init__()
    self.regularizer = regularizer

  def on_train_batch_end(self, batch, logs=None):
    if batch == 0:
      self.regularizer.set_strength(0.0)


def test_fit_logs_the_cost_exports_it_and_the_rebuilt_model_costs_it(
    tmp_path):
  model, regularizer = _dying_model()
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(_zero_loss),
                metrics=regularizer.metrics())
  export = callbacks.StructureExportCallback(regularizer, str(tmp_path),
                                             every_n_steps=1, plot=False)
  history = model.fit(*_data(), batch_size=4, epochs=1, verbose=0,
                      callbacks=[_StopAfterFirstStep(regularizer), export])
  # Step 1 runs at 8 alive in {stem, res}, step 2 at 5; {down} keeps 6.
  assert history.history['flops'] == [(_flops(8, 6) + _flops(5, 6)) / 2]
  assert _flops(8, 6) == layer_models.RESIDUAL_CNN_FLOPS
  # Step 2 runs at strength 0.
  assert history.history['morph_net_loss'][0] == pytest.approx(
      _STRENGTH * _term(3 * 0.4 + 5.0, 8, 1.0) / 2, rel=1e-6)
  counts = {'stem': 5, 'res': 5, 'down': 6}
  assert regularizer.alive_counts() == counts
  assert [os.path.basename(p) for p in export.exported_paths] == [
      'alive_1', 'alive_2', 'alive_2']
  structure = structure_files.read_structure(export.exported_paths[-1])
  assert structure == counts
  cost = layer_structure_cost.LayerStructureCost(regularizer)
  assert cost(structure) == float(regularizer.cost()) == _flops(5, 6)
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  # Compiled again without MorphNet's loss and metrics.
  config = rebuilt.get_compile_config()
  assert (config['loss']['config'], config['metrics']) == (
      'morph_net_tests>_zero_loss', [])
  fresh = layer_regularizer.LayerRegularizer(
      rebuilt, 'GammaFlopsRegularizer', gamma_threshold=0.15)
  assert float(fresh.cost()) == cost(structure)
  assert fresh.alive_counts() == counts


def test_structure_cost_by_hand_without_a_regularizer():
  model = layer_models.residual_cnn()
  cost = layer_structure_cost.LayerStructureCost(model)
  assert cost.resource == 'flops'
  assert cost({}) == layer_models.RESIDUAL_CNN_FLOPS
  assert cost({'stem': 3, 'res': 3, 'down': 2}) == _flops(3, 2)
  assert cost.costed_layers() == ['stem', 'res', 'down', 'logits']
  size = layer_structure_cost.LayerStructureCost(
      model, 'GammaModelSizeRegularizer')
  # 9*3*a + 9*a*a + 9*a*d + 4*d weights.
  assert size({'stem': 3, 'res': 3, 'down': 2}) == 81 + 81 + 54 + 8
  with pytest.raises(errors.StructureError):
    cost({'stem': 3, 'res': 4})  # One group, two widths.


def test_structure_cost_refuses_other_resources():
  with pytest.raises(errors.InvalidArgumentError) as e:
    layer_structure_cost.LayerStructureCost(layer_models.residual_cnn(),
                                            'memory')
  assert str(e.value) == (
      'Invalid value for argument `resource` of the layer-level '
      "StructureCost. Expected None, 'flops', 'model_size', 'activation', "
      'a LayerRegularizer, or one of GammaActivationRegularizer, '
      'GammaFlopsRegularizer, GammaModelSizeRegularizer, '
      'GroupLassoActivationRegularizer, GroupLassoFlopsRegularizer, '
      'GroupLassoModelSizeRegularizer, LogisticSigmoidFlopsRegularizer, '
      'LogisticSigmoidModelSizeRegularizer (a class or its name). '
      "Received: resource='memory'. Other resources need "
      'the TensorFlow backend, whose graph engine StructureCost costs them.')


def test_latency_needs_the_traced_ops_of_the_graph_engine():
  want = (
      'GammaLatencyRegularizer needs the TensorFlow graph engine: a latency '
      'profile charges every op TensorFlow traces (convolutions, matmuls '
      'and the element-wise ops between them, by their bytes), and the '
      "layer-level regularizer (Keras backend %r) has no such per-op list, "
      "only each layer's multiply-adds. Use KERAS_BACKEND=tensorflow (with "
      'TensorFlow installed) and morph_net.keras.ModelRegularizer, or a '
      'FLOPs or model-size regularizer on this backend.' %
      keras.backend.backend())
  model = layer_models.residual_cnn()
  with pytest.raises(errors.MissingDependencyError) as e:
    layer_regularizer.LayerRegularizer(model, 'GammaLatencyRegularizer',
                                       gamma_threshold=1e-3)
  assert str(e.value) == want
  with pytest.raises(errors.MissingDependencyError) as e:
    layer_structure_cost.LayerStructureCost(model, 'GammaLatencyRegularizer')
  assert str(e.value) == want


def test_activation_structure_cost_by_hand():
  cost = layer_structure_cost.LayerStructureCost(
      layer_models.residual_cnn(), 'GammaActivationRegularizer')
  # stem a + res a + down d + logits 4 output channels.
  assert cost({'stem': 3, 'res': 3, 'down': 2}) == 3 + 3 + 2 + 4


def test_metrics_are_layer_metrics_fed_by_the_loss():
  regularizer = layer_regularizer.LayerRegularizer(
      layer_models.residual_cnn(), 'GammaModelSizeRegularizer',
      gamma_threshold=1e-3)
  metrics = regularizer.metrics()
  assert [(m.name, m.quantity) for m in metrics] == [
      ('morph_net_loss', 'regularization_loss'), ('modelsize', 'cost')]
  metrics[1].update_state(np.ones([2]), np.ones([2]))  # Adds nothing.
  assert float(metrics[1].result()) == 0.0
  regularizer.record_metrics(ops.convert_to_tensor(3.0))
  assert float(metrics[0].result()) == 3.0
  assert float(metrics[1].result()) == 216 + 576 + 432 + 24
  with pytest.raises(errors.InvalidArgumentError) as e:
    layer_regularizer.LayerMorphNetMetric('flops')
  assert str(e.value) == (
      'Invalid value for argument `quantity` of LayerMorphNetMetric. '
      "Expected one of ['regularization_loss', 'cost']. Received: "
      "quantity='flops'")


def _rescue_model():
  """threshold 1e-3, band 2e-3: stem_bn channel 0 inside the band (0.0015),
  1 dead (0.0005), 2 above (0.003); res_bn 0 on those; down_bn channel 0
  inside (0.0012). The initial cost is read before: every channel alive."""
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=1e-3)
  assert regularizer.initial_cost == layer_models.RESIDUAL_CNN_FLOPS
  _set(model.get_layer('stem_bn'), [0, 1, 2], [0.0015, 0.0005, 0.003])
  _set(model.get_layer('res_bn'), [0, 1, 2], 0.0)
  _set(model.get_layer('down_bn'), [0], 0.0012)
  return model, regularizer


def test_rescue_term_and_its_gradient_by_hand():
  model, regularizer = _rescue_model()
  # Group {stem, res} is listed under stem and res: 2 x (0.002 - 0.0015);
  # {down}: 0.002 - 0.0012.
  assert float(regularizer.rescue_term()) == pytest.approx(0.0018,
                                                           rel=1e-5)
  assert float(keras.ops.convert_to_numpy(regularizer.rescue_band)) == (
      np.float32(2e-3))
  regularizer.rescue_strength.assign(1e-3)
  assert float(regularizer.loss()) == pytest.approx(1.8e-6, rel=1e-5)
  # One SGD step (lr 0.1) on the rescue alone: d/d stem_bn[0] = -2 (its
  # group's two listings), d/d down_bn[0] = -1, 0 elsewhere.
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(_zero_loss))
  model.fit(*_data(4), batch_size=4, epochs=1, verbose=0)
  stem = keras.ops.convert_to_numpy(model.get_layer('stem_bn').gamma)
  down = keras.ops.convert_to_numpy(model.get_layer('down_bn').gamma)
  np.testing.assert_allclose(stem[:3], [0.0015 + 2e-4, 0.0005, 0.003],
                             rtol=1e-5)
  np.testing.assert_allclose(stem[3:], 1.0)
  np.testing.assert_allclose(down, [0.0012 + 1e-4] + [1.0] * 5, rtol=1e-5)


def test_cost_target_reads_the_lead_cost_and_rescues_under_the_target():
  model, regularizer = _rescue_model()
  callback = cost_target.CostTargetCallback(
      regularizer, target_cost=0.99 * regularizer.initial_cost)
  # No velocity yet: the lead cost is the cost (a = 7: channel 1 is dead).
  assert callback.lead_cost() == float(regularizer.cost()) == _flops(7, 6)
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                loss=regularizer.wrap_loss(_zero_loss))
  model.fit(*_data(4), batch_size=4, epochs=1, verbose=0,
            callbacks=[callback])
  # The cost (a = 7) is under the target, 0.99 x that of a = 8: rescuing.
  assert callback.controller.rescuing
  force = float(regularizer.term()) / sum(
      float(np.sum(v)) for v in regularizer.regularization_vectors().values())
  want = (callback.controller.rescue_multiplier /
          callback.controller.initial_cost * force)
  assert float(keras.ops.convert_to_numpy(
      regularizer.rescue_strength)) == pytest.approx(want, rel=1e-6)
  assert not callback._lead_refused  # pylint: disable=protected-access


@pytest.mark.skipif(not _ON_TF, reason='compares with the graph engine')
def test_rescue_term_equals_the_graph_engine():
  model, regularizer = _rescue_model()
  graph = morph_keras.ModelRegularizer(model, 'GammaFlopsRegularizer',
                                       gamma_threshold=1e-3)
  assert float(regularizer.rescue_term()) == pytest.approx(
      float(graph.rescue_term()), rel=1e-6)
  structure = {'stem': 5, 'res': 5, 'down': 2}
  assert layer_structure_cost.LayerStructureCost(regularizer)(structure) == (
      morph_keras.StructureCost(graph)(structure))


@pytest.mark.skipif(_ON_TF, reason='the public names of another backend')
def test_public_names_on_this_backend():
  assert morph_keras.StructureCost is layer_structure_cost.LayerStructureCost
  assert morph_keras.MorphNetMetric is layer_regularizer.LayerMorphNetMetric
  assert morph_keras.MorphNetLoss is layer_regularizer.LayerMorphNetLoss
  assert morph_keras.StructureExportCallback is (
      callbacks.StructureExportCallback)
  assert morph_keras.is_chief()
  with pytest.raises(errors.MissingDependencyError) as e:
    callbacks.CostSummaryCallback(None, '/tmp')
  assert str(e.value) == (
      'CostSummaryCallback writes TensorBoard scalars with tf.summary, '
      'which needs TensorFlow, and the Keras backend is %r. On this '
      'backend compile with metrics=regularizer.metrics() (the cost and '
      'the regularization loss in the logs and the progress bar) and '
      'write the structure with StructureExportCallback; or use '
      'KERAS_BACKEND=tensorflow.' % keras.backend.backend())


_WITHOUT_TF = """
import sys
import morph_net.keras
from morph_net.keras import StructureCost, StructureExportCallback
from morph_net.keras import MorphNetMetric, is_chief
assert 'tensorflow' not in sys.modules, 'tensorflow was imported'
print('ok')
"""


@pytest.mark.skipif(_ON_TF, reason='checks the imports of another backend')
def test_the_training_names_do_not_import_tensorflow():
  env = dict(os.environ, PYTHONPATH=_ROOT)
  result = subprocess.run([sys.executable, '-c', _WITHOUT_TF], env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'ok'
