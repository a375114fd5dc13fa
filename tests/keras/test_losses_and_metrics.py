"""Tests of morph_net.keras.losses, .metrics and ModelRegularizer.attach."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import losses
from morph_net.keras import metrics
from morph_net.network_regularizers import flop_regularizer

GAMMA = flop_regularizer.GammaFlopsRegularizer
# conv1 8x8x3 -> 8x8x4 (3x3, same): 2*64*9 per channel pair, 3*4 pairs; dense
# 4 -> 3: 2 per pair.
FLOPS = 2 * 64 * 9 * 3 * 4 + 2 * 4 * 3
GAMMAS = [0.5, 1.0, 1.5, 2.0]
# Term: conv1 cost per pair times (3 inputs x sum|gamma|) plus the dense's
# 2 x 3 outputs x sum|gamma|.
TERM = 2 * 64 * 9 * 3 * sum(GAMMAS) + 2 * 3 * sum(GAMMAS)
STRENGTH = 1e-4


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _model():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                          name='conv1')(inputs)
  x = keras.layers.BatchNormalization(name='bn1')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  model = keras.Model(inputs, keras.layers.Dense(3, name='logits')(x))
  model.get_layer('bn1').gamma.assign(GAMMAS)
  return model


def _regularizer(model):
  return morph_keras.ModelRegularizer(model, GAMMA, gamma_threshold=1e-3,
                                      strength=STRENGTH)


def _batch():
  rng = np.random.RandomState(0)
  return np.arange(4) % 3, rng.rand(4, 3).astype(np.float32)


def _data_loss():
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_loss_adds_strength_times_term_once_per_batch():
  model = _model()
  regularizer = _regularizer(model)
  assert float(regularizer.term()) == pytest.approx(TERM, rel=1e-6)
  loss = regularizer.wrap_loss(_data_loss())
  assert isinstance(loss, losses.MorphNetLoss)
  assert loss.name == 'morph_net_sparse_categorical_crossentropy'
  y_true, y_pred = _batch()
  expected = float(_data_loss()(y_true, y_pred)) + STRENGTH * TERM
  assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)
  # Wrapping a MorphNetLoss again wraps its data loss: one term, not two.
  again = regularizer.wrap_loss(loss)
  assert float(again(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize('data_loss', [
    'sparse_categorical_crossentropy',
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
])
def test_loss_config_round_trip_gives_a_detached_loss(data_loss, caplog):
  regularizer = _regularizer(_model())
  loss = regularizer.wrap_loss(data_loss)
  config = keras.saving.serialize_keras_object(loss)
  assert config['registered_name'] == 'morph_net>MorphNetLoss'
  restored = keras.saving.deserialize_keras_object(config)
  assert isinstance(restored, losses.MorphNetLoss)
  assert restored.regularizer is None
  assert restored.get_config() == loss.get_config()
  y_true, y_pred = _batch()
  if isinstance(data_loss, str):  # A function: per-example values.
    expected = keras.ops.mean(keras.losses.get(data_loss)(y_true, y_pred))
  else:
    expected = data_loss(y_true, y_pred)
  with caplog.at_level('WARNING'):
    value = float(restored(y_true, y_pred))
    restored(y_true, y_pred)
  assert value == pytest.approx(float(expected), rel=1e-6)
  warnings = [r.getMessage() for r in caplog.records
              if 'has no regularizer attached' in r.getMessage()]
  assert warnings == [
      "MorphNetLoss '%s' has no regularizer attached (a model loaded from a "
      'file): it is the data loss alone and MorphNet is not training. '
      'Re-attach one with ModelRegularizer(model, ...).attach(model), or '
      'compile again with loss=regularizer.wrap_loss(...).' % loss.name]


def test_loss_without_morph_net_is_the_data_loss():
  data = _data_loss()
  loss = losses.MorphNetLoss(data)
  assert loss.without_morph_net() is data
  assert losses.unwrap(loss) is data
  assert losses.unwrap(data) is data


def test_loss_that_is_not_a_loss_is_refused():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Invalid value for argument `loss` of '
                     r'MorphNetLoss\. Expected the data loss: a loss name, a '
                     r'function \(y_true, y_pred\) or a Keras Loss\. '
                     r'Received: loss=None \(NoneType\)'):
    losses.MorphNetLoss(None)


def test_metrics_read_the_regularizer_and_round_trip():
  regularizer = _regularizer(_model())
  loss_metric, cost_metric = regularizer.metrics()
  assert (loss_metric.name, cost_metric.name) == ('morph_net_loss', 'flops')
  assert (loss_metric.quantity, cost_metric.quantity) == (
      'regularization_loss', 'cost')
  for metric in (loss_metric, cost_metric):
    metric.update_state(None, None)
    metric.update_state(None, None)
  assert float(cost_metric.result()) == FLOPS
  assert float(loss_metric.result()) == pytest.approx(STRENGTH * TERM,
                                                      rel=1e-6)
  config = keras.saving.serialize_keras_object(cost_metric)
  assert config['registered_name'] == 'morph_net>MorphNetMetric'
  assert config['config']['quantity'] == 'cost'
  restored = keras.saving.deserialize_keras_object(config)
  assert restored.regularizer is None and restored.name == 'flops'
  assert restored.without_morph_net() is None


def test_detached_metric_reports_nan_and_warns_once(caplog):
  metric = metrics.MorphNetMetric('cost', name='flops')
  with caplog.at_level('WARNING'):
    metric.update_state(None, None)
    metric.update_state(None, None)
  assert np.isnan(float(metric.result()))
  warnings = [r.getMessage() for r in caplog.records
              if 'has no regularizer attached' in r.getMessage()]
  assert warnings == [
      "MorphNetMetric 'flops' has no regularizer attached (a model loaded "
      'from a file): it reports NaN. Re-attach one with '
      'ModelRegularizer(model, ...).attach(model).']


def test_unknown_metric_quantity_is_refused():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid value for argument `quantity` of "
                     r"MorphNetMetric\. Expected one of \['cost', "
                     r"'regularization_loss'\]\. Received: quantity='flops'"):
    metrics.MorphNetMetric('flops')


def test_attach_gives_a_recompiled_model_its_regularizer_back():
  model = _model()
  model.compile(optimizer=keras.optimizers.SGD(0.01),
                loss=losses.MorphNetLoss(_data_loss()),
                metrics=['accuracy', metrics.MorphNetMetric('cost',
                                                            name='flops')])
  optimizer = model.optimizer
  regularizer = _regularizer(model)
  assert regularizer.attach() == 2
  assert model.optimizer is optimizer
  assert model.loss.regularizer is regularizer
  x = np.zeros((4, 8, 8, 3), np.float32)
  logs = model.evaluate(x, np.zeros(4), verbose=0, return_dict=True)
  assert logs['flops'] == FLOPS
  data = float(_data_loss()(np.zeros(4), model.predict(x, verbose=0)))
  assert logs['loss'] == pytest.approx(data + STRENGTH * TERM, rel=1e-5)


def test_attach_to_another_model_is_refused():
  regularizer = _regularizer(_model())
  other = _model()
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid value for argument `model` of attach: "
                     r"'%s' is not the model '%s' this regularizer analyses\."
                     r' Build a ModelRegularizer on the model you train\.' %
                     (other.name, regularizer.model.name)):
    regularizer.attach(other)


@pytest.mark.parametrize('compiled', [False, True])
def test_attach_without_a_morph_net_loss_is_refused(compiled):
  model = _model()
  if compiled:
    model.compile(optimizer='sgd', loss='mse')
  regularizer = _regularizer(model)
  with pytest.raises(errors.NotReadyError,
                     match=r"Model '%s' is not compiled with a MorphNetLoss "
                     r"\(its loss: %s\), so there is nothing to attach the "
                     r'regularizer to\. Compile it with loss=regularizer\.'
                     r'wrap_loss\(<data loss>\) and metrics=\[\.\.\.\] \+ '
                     r'regularizer\.metrics\(\) instead\.' %
                     (model.name, "'mse'" if compiled else 'None')):
    regularizer.attach(model)


def test_loss_names_are_valid_scope_names():
  regularizer = _regularizer(_model())
  assert regularizer.wrap_loss(lambda y, p: p).name == 'morph_net_lambda'
  assert regularizer.wrap_loss('mse').name == 'morph_net_mean_squared_error'
