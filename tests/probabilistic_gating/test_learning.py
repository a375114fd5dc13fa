"""Learning with LogisticSigmoid FLOP regularization closes redundant gates.

The label depends on 4 of 16 input features; a gate on the input and a gate
on 32 hidden units give the regularizer 12 redundant input channels and
(almost all of) the hidden units to close. Training uses `model.fit` with the
Keras bridge (`morph_net.keras.ModelRegularizer`, `wrap_loss`).
"""

import numpy as np

from morph_net.compat import keras as compat
from morph_net.network_regularizers import logistic_sigmoid_regularizer as lsr
from morph_net.probabilistic_gating import activation_gating as ag

keras = compat.get_keras()

N_INFORMATIVE, N_NOISE, HIDDEN = 4, 12, 32


def _data(seed, count=2000):
  rs = np.random.RandomState(seed)
  x = rs.randn(count, N_INFORMATIVE + N_NOISE).astype(np.float32)
  y = (x[:, 0] + x[:, 1] - x[:, 2] + 0.5 * x[:, 3] > 0).astype(np.int32)
  return x, y


def _gate(name, keep_first):
  return ag.LogisticSigmoidGating(
      name=name, temperature=1.0, straight_through=True, log_odds_init=2.0,
      keep_first_channel_alive=keep_first)


def _train(multiplier):
  """Returns (test accuracy, final cost, input log-odds, hidden log-odds)."""
  from morph_net import keras as morph_net_keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  inputs = keras.Input((N_INFORMATIVE + N_NOISE,))
  h = _gate('input_gate', keep_first=False)(inputs)
  h = keras.layers.Dense(HIDDEN, activation='relu', name='hidden')(h)
  h = _gate('hidden_gate', keep_first=True)(h)
  model = keras.Model(inputs, keras.layers.Dense(2, name='logits')(h))
  reg = morph_net_keras.ModelRegularizer(
      model, lsr.LogisticSigmoidFlopsRegularizer)
  initial_cost = float(reg.cost())
  assert initial_cost == 2 * (16 * HIDDEN + HIDDEN * 2)  # MatMul FLOPs.
  reg.set_strength(multiplier / initial_cost)
  model.compile(
      keras.optimizers.Adam(0.03),
      loss=reg.wrap_loss(
          keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
      metrics=['accuracy'])
  x, y = _data(0)
  model.fit(x, y, batch_size=64, epochs=6, verbose=0)
  x_test, y_test = _data(1)
  accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
  return (accuracy, float(reg.cost()),
          model.get_layer('input_gate').log_odds.numpy(),
          model.get_layer('hidden_gate').log_odds.numpy())


def test_flop_regularizer_closes_redundant_gates():
  base_accuracy, base_cost, _, _ = _train(0.0)
  accuracy, cost, input_odds, hidden_odds = _train(1.0)
  _, strong_cost, _, _ = _train(4.0)
  noise_closed = int(np.sum(input_odds[N_INFORMATIVE:] <= 0))
  hidden_closed = int(np.sum(hidden_odds <= 0))
  print('accuracy %.4f (unregularized %.4f); FLOPs %.0f -> %.0f (strength '
        'x4: %.0f); noise gates closed %d/%d; hidden gates closed %d/%d' %
        (accuracy, base_accuracy, base_cost, cost, strong_cost, noise_closed,
         N_NOISE, hidden_closed, HIDDEN))
  assert noise_closed >= N_NOISE // 2
  assert np.all(input_odds[:N_INFORMATIVE] > 0)  # Informative inputs stay.
  assert hidden_closed >= HIDDEN // 2
  assert accuracy >= base_accuracy - 0.02
  assert strong_cost < cost < base_cost
