"""CostTargetController / CostTargetCallback: a budget instead of a strength."""

import math

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import cost_target
from morph_net.network_regularizers import flop_regularizer


class _Plant(object):
  """A cost that falls towards initial / (1 + m) with a lag, m = multiplier,
  and (like dead channels) does not come back up faster than `revive`."""

  def __init__(self, initial=1000.0, lag=0.05, revive=0.005):
    self.cost = initial
    self.initial = initial
    self.lag = lag
    self.revive = revive

  def step(self, multiplier):
    goal = self.initial / (1.0 + multiplier)
    rate = self.lag if goal < self.cost else self.revive
    self.cost += rate * (goal - self.cost)
    return self.cost


def test_controller_reaches_and_holds_a_target_on_a_lagging_plant():
  plant = _Plant()
  controller = cost_target.CostTargetController(400.0, plant.initial)
  costs = []
  for _ in range(3000):
    costs.append(plant.step(controller.multiplier))
    controller.update(costs[-1])
  assert controller.updates == 3000
  # Within 3% of the target over the last third of the run.
  assert all(abs(c / 400.0 - 1.0) < 0.03 for c in costs[2000:]), (
      min(costs[2000:]), max(costs[2000:]))
  # The multiplier that holds initial / (1 + m) = 400 is 1.5.
  assert controller.multiplier == pytest.approx(1.5, rel=0.05)


def test_controller_update_is_the_documented_formula():
  controller = cost_target.CostTargetController(
      50.0, 100.0, initial_multiplier=0.5, gain=0.1, brake=2.0)
  assert controller.strength == pytest.approx(0.5 / 100.0)
  # Cost and lead above the target: the integral grows by gain * steps * v.
  controller.update(75.0, 60.0, steps=2)
  integral = math.log(0.5) + 0.1 * 2 * 0.5
  assert controller.multiplier == pytest.approx(math.exp(integral))
  # Lead under, cost above: the integral waits; the brake cuts by u = -0.2.
  controller.update(60.0, 40.0)
  assert controller.multiplier == pytest.approx(
      math.exp(integral + 2.0 * -0.2))
  # Both under: the integral falls by gain * v, v = -0.1; brake u = -0.4.
  controller.update(45.0, 30.0)
  integral += 0.1 * -0.1
  assert controller.multiplier == pytest.approx(
      math.exp(integral + 2.0 * -0.4))
  assert controller.strength == pytest.approx(controller.multiplier / 100.0)
  # Violations are clipped to [-1, 1].
  assert controller.violation(1000.0) == 1.0
  assert controller.violation(0.0) == -1.0


def test_controller_multiplier_stays_in_its_bounds():
  controller = cost_target.CostTargetController(
      10.0, 100.0, initial_multiplier=1.0, gain=1.0, min_multiplier=0.5,
      max_multiplier=4.0)
  for _ in range(10):
    controller.update(100.0)
  assert controller.multiplier == pytest.approx(4.0)
  for _ in range(20):
    controller.update(0.0)
  assert controller.multiplier == pytest.approx(0.5)
  assert controller.get_config()['max_multiplier'] == pytest.approx(4.0)


@pytest.mark.parametrize('kwargs,message', [
    (dict(target_cost=200.0), 'target_cost`: 200 is above the initial cost '
     '100'),
    (dict(target_cost=0.0), 'Expected a positive finite number. Received: '
     'target_cost=0.0'),
    (dict(target_cost=float('nan')), 'Received: target_cost=nan'),
    (dict(target_cost=50.0, gain=-1.0), 'Received: gain=-1.0'),
    (dict(target_cost=50.0, brake=-1.0), 'Expected a non-negative finite '
     'number. Received: brake=-1.0'),
    (dict(target_cost=50.0, initial_multiplier=10.0, max_multiplier=5.0),
     '`initial_multiplier`: 10 is outside [min_multiplier, max_multiplier] '
     '= [0.0001, 5]'),
])
def test_controller_arguments_are_checked(kwargs, message):
  with pytest.raises(errors.InvalidArgumentError) as info:
    cost_target.CostTargetController(initial_cost=100.0, **kwargs)
  assert message in str(info.value)


def test_controller_refuses_a_cost_that_is_not_a_number():
  controller = cost_target.CostTargetController(50.0, 100.0)
  with pytest.raises(errors.InvalidArgumentError, match='Received: cost=nan'):
    controller.update(float('nan'))
  with pytest.raises(errors.InvalidArgumentError,
                     match='Received: lead_cost=-1.0'):
    controller.update(10.0, -1.0)


def _tiny_model():
  inputs = keras.Input((8, 8, 1))
  x = inputs
  for i in range(2):
    x = keras.layers.Conv2D(16, 3, padding='same', use_bias=False,
                            name='c%d' % i)(x)
    x = keras.layers.BatchNormalization(name='b%d' % i)(x)
    x = keras.layers.ReLU()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(2, name='out')(x))


def test_callback_reaches_and_holds_the_target_in_fit():
  keras.utils.set_random_seed(0)
  model = _tiny_model()
  rng = np.random.RandomState(0)
  x = rng.rand(512, 8, 8, 1).astype('float32')
  y = (x.mean((1, 2, 3)) > 0.5).astype('int32')
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=0.05)
  initial = regularizer.initial_cost
  # Two 3x3 convs on 8x8 (1 -> 16 -> 16 channels) and the 16 -> 2 dense.
  assert initial == 2 * 64 * 9 * (1 * 16 + 16 * 16) + 2 * 16 * 2  # 313,408
  target = morph_keras.CostTargetCallback(regularizer, 0.5 * initial)
  costs, logged = [], []

  def record(batch, logs):
    del batch
    costs.append(float(regularizer.cost()) / initial)
    logged.append(dict(logs))

  model.compile(optimizer=keras.optimizers.Adam(0.02),
                loss=regularizer.wrap_loss(
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True)))
  history = model.fit(x, y, batch_size=32, epochs=30, verbose=0,
                      callbacks=[target, keras.callbacks.LambdaCallback(
                          on_train_batch_end=record)])
  assert len(costs) == 480
  assert costs[0] == 1.0
  # Reached, and within 3% of the target over the last 64 steps.
  assert all(abs(c - 0.5) <= 0.015 for c in costs[-64:]), costs[-64:]
  # The strength and the target are in the logs and the History.
  assert logged[-1]['flops_target'] == 0.5 * initial
  assert logged[-1]['morph_net_strength'] == pytest.approx(
      float(regularizer.strength.numpy()))
  assert history.history["flops_target"] == [0.5 * initial] * 30
  assert len(history.history["morph_net_strength"]) == 30


def test_callback_update_every_and_its_errors():
  model = _tiny_model()
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=0.05)
  callback = morph_keras.CostTargetCallback(
      regularizer, 0.5 * regularizer.initial_cost, update_every=3)
  callback.on_train_begin()
  assert float(regularizer.strength.numpy()) == pytest.approx(
      callback.controller.strength)
  for batch in range(7):
    callback.on_train_batch_end(batch, {})
  assert callback.controller.updates == 2
  # The lead cost counts channels above lead x threshold: all of them here.
  assert callback.lead_cost() == regularizer.initial_cost
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected an integer >= 1. Received: '
                     r'update_every=0'):
    morph_keras.CostTargetCallback(regularizer, 100.0, update_every=0)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'alive threshold >= 1. Received: lead=0.5'):
    morph_keras.CostTargetCallback(regularizer, 100.0, lead=0.5)
