"""Constant folding into recurrent layers (SimpleRNN, GRU, LSTM and
Bidirectional wrappers of them).

Found by tests/property/test_random_models.py (the 520-model run, seed
606): under a Gamma regularizer, dead channels with a nonzero beta feed a
constant into a GRU (Dense -> BatchNormalization -> ReLU -> GRU). The
recurrent rule called the layer channelwise, so folding neither folded the
constant nor reported the layer: rebuild dropped the channels' kernel rows
and the rebuilt outputs differed by up to 0.21, with no warning. A
recurrent layer reads its input only through each direction's kernel, and
adds the input bias before any nonlinearity (a GRU with reset_after: the
first bias row; without: its one bias), so folding now moves the constant
into each direction's input bias, exactly; a layer without a bias reports
the constant lost, and a constant varying over steps is reported not exact.
"""

import logging

import keras
import numpy as np
import pytest

from morph_net.surgery import builtin_rules
from morph_net.surgery import rebuild
from morph_net.testing import flop_regularizers
from morph_net.testing import random_models

L = keras.layers

_DEAD = [1, 4]  # Channels of the batch norm before the recurrent layer.


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


class _Messages(logging.Handler):
  """Collects absl's messages (INFO and up) while installed."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture
def messages():
  handler = _Messages()
  logger = logging.getLogger('absl')
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  yield handler.messages
  logger.removeHandler(handler)
  logger.setLevel(level)


def _random_weights(model, seed=0):
  """Random batch norms (gamma 0 and beta 0.5 to 1.5 on the dead channels,
  so they output a positive constant after a ReLU) and random kernels."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      n = int(layer.gamma.shape[0])
      gamma = rng.uniform(0.5, 1.5, n)
      beta = rng.normal(0.0, 0.5, n)
      gamma[_DEAD] = 0.0
      beta[_DEAD] = rng.uniform(0.5, 1.5, len(_DEAD))
      for variable, value in ((layer.gamma, gamma), (layer.beta, beta),
                              (layer.moving_mean, rng.normal(0.0, 0.5, n)),
                              (layer.moving_variance,
                               rng.uniform(0.5, 2.0, n))):
        variable.assign(value.astype('float32'))
    else:
      for variable in layer.weights:
        variable.assign(rng.normal(0.0, 0.5, variable.shape).astype(
            'float32'))


def _model(recurrent, use_relu=True, after=None):
  x = keras.Input((5, 3))
  y = L.Dense(6, use_bias=False, name='d')(x)
  y = L.BatchNormalization(name='bn')(y)
  if use_relu:
    y = L.ReLU(name='relu')(y)
  y = recurrent(y)
  if after is not None:
    y = after(y)
  model = keras.Model(x, y)
  _random_weights(model)
  return model


def _outputs(model, seed=1):
  data = np.random.default_rng(seed).normal(size=(3, 5, 3)).astype(
      'float32')
  return keras.ops.convert_to_numpy(model(data, training=False))


def _inexact(messages):
  return [m for m in messages
          if 'not exact for' in m or 'Cannot fold the constant' in m]


_RECURRENT = {
    'simple_rnn': lambda: L.SimpleRNN(3, return_sequences=True, name='r'),
    'gru': lambda: L.GRU(3, return_sequences=True, name='r'),
    'gru_reset_before': lambda: L.GRU(3, reset_after=False,
                                      return_sequences=True, name='r'),
    'lstm': lambda: L.LSTM(3, return_sequences=True, name='r'),
    'simple_rnn_backwards': lambda: L.SimpleRNN(3, go_backwards=True,
                                                name='r'),
    'gru_backwards': lambda: L.GRU(3, go_backwards=True, name='r'),
    'gru_reset_before_backwards': lambda: L.GRU(
        3, reset_after=False, go_backwards=True, return_sequences=True,
        name='r'),
    'lstm_backwards': lambda: L.LSTM(3, go_backwards=True, name='r'),
    'gru_last_step': lambda: L.GRU(3, name='r'),
    'lstm_sigmoid_recurrent': lambda: L.LSTM(
        3, recurrent_activation='hard_sigmoid', return_sequences=True,
        name='r'),
    'bi_gru_concat': lambda: L.Bidirectional(
        L.GRU(3, return_sequences=True), name='r'),
    'bi_gru_sum': lambda: L.Bidirectional(
        L.GRU(3, return_sequences=True), merge_mode='sum', name='r'),
    'bi_gru_reset_before_mul': lambda: L.Bidirectional(
        L.GRU(3, reset_after=False, return_sequences=True),
        merge_mode='mul', name='r'),
    'bi_lstm_ave': lambda: L.Bidirectional(
        L.LSTM(3, return_sequences=True), merge_mode='ave', name='r'),
    'bi_simple_rnn_concat_last': lambda: L.Bidirectional(
        L.SimpleRNN(3), name='r'),
    'bi_lstm_backward_layer_sum': lambda: L.Bidirectional(
        L.LSTM(3, return_sequences=True),
        backward_layer=L.LSTM(3, return_sequences=True, go_backwards=True),
        merge_mode='sum', name='r'),
    # Units that keep their width: all of them take the constant.
    'gru_sigmoid_activation_keeps_units': lambda: L.GRU(
        3, activation='sigmoid', return_sequences=True, name='r'),
    'bi_two_widths_keeps_units': lambda: L.Bidirectional(
        L.LSTM(3, return_sequences=True),
        backward_layer=L.GRU(2, return_sequences=True, go_backwards=True),
        name='r'),
}


@pytest.mark.parametrize('kind', sorted(_RECURRENT))
def test_a_constant_into_a_recurrent_layer_folds_exactly(kind, messages):
  model = _model(_RECURRENT[kind]())
  regularizer = flop_regularizers.gamma_flops(model)
  assert regularizer.alive_counts() == {'d': 4}
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  for rnn in builtin_rules.recurrent_directions(rebuilt.get_layer('r')):
    assert tuple(rnn.cell.kernel.shape)[0] == 4
  assert not _inexact(messages)
  want = _outputs(model)
  # The dead channels' constant matters: without folding the outputs move.
  unfolded = rebuild.rebuild(model, regularizer, transfer_weights=True,
                             fold_constants=False)
  assert float(np.abs(_outputs(unfolded) - want).max()) > 1e-2
  np.testing.assert_allclose(_outputs(rebuilt), want, rtol=1e-5, atol=1e-5)


def test_the_fold_goes_into_the_input_bias_by_hand():
  """SimpleRNN, one dead channel of constant 2 into kernel row [1, -3]:
  the rebuilt bias is the model's plus [2, -6]."""
  x = keras.Input((4, 2))
  y = L.Dense(2, use_bias=False, name='d')(x)
  y = L.BatchNormalization(name='bn')(y)
  y = L.SimpleRNN(2, return_sequences=True, name='r')(y)
  model = keras.Model(x, y)
  bn = model.get_layer('bn')
  for variable, value in ((bn.gamma, [1.0, 0.0]), (bn.beta, [0.0, 2.0]),
                          (bn.moving_mean, [0.0, 0.0]),
                          (bn.moving_variance, [0.999, 0.999])):
    variable.assign(np.array(value, 'float32'))
  cell = model.get_layer('r').cell
  cell.kernel.assign(np.array([[0.5, 0.25], [1.0, -3.0]], 'float32'))
  cell.bias.assign(np.array([0.1, 0.2], 'float32'))
  rebuilt = rebuild.rebuild(model, flop_regularizers.gamma_flops(model),
                            transfer_weights=True)
  np.testing.assert_allclose(rebuilt.get_layer('r').cell.bias.numpy(),
                             [2.1, -5.8], rtol=1e-6)
  np.testing.assert_allclose(_outputs_of(rebuilt, (4, 2)),
                             _outputs_of(model, (4, 2)), rtol=1e-5,
                             atol=1e-5)


def _outputs_of(model, shape):
  data = np.random.default_rng(2).normal(size=(3,) + shape).astype(
      'float32')
  return keras.ops.convert_to_numpy(model(data, training=False))


def test_a_gru_with_reset_after_folds_into_the_first_bias_row():
  model = _model(L.GRU(3, return_sequences=True, name='r'))
  rebuilt = rebuild.rebuild(model, flop_regularizers.gamma_flops(model),
                            transfer_weights=True)
  old = model.get_layer('r').cell.bias.numpy()
  new = rebuilt.get_layer('r').cell.bias.numpy()
  assert new.shape == (2, 9)
  np.testing.assert_array_equal(new[1], old[1])
  assert float(np.abs(new[0] - old[0]).min()) > 0.0


@pytest.mark.parametrize('bidirectional', [False, True])
def test_a_recurrent_layer_without_bias_reports_the_lost_constant(
    bidirectional, messages):
  gru = L.GRU(3, use_bias=False, return_sequences=True, name='r')
  model = _model(L.Bidirectional(gru, name='r') if bidirectional else gru)
  rebuilt = rebuild.rebuild(model, flop_regularizers.gamma_flops(model),
                            transfer_weights=True)
  lost = [m for m in messages if 'Cannot fold the constant output' in m]
  assert len(lost) == 1
  assert ("layer 'r' (%s)" % ('Bidirectional' if bidirectional else 'GRU')
          in lost[0])
  assert 'no bias' in lost[0]
  assert float(np.abs(_outputs(rebuilt) - _outputs(model)).max()) > 1e-2


def test_a_constant_varying_over_steps_is_reported_not_exact(messages):
  """Zero padding of the steps after the dead channels: the constant
  reaches the GRU at the inner steps only; folding reports it."""
  x = keras.Input((5, 3))
  y = L.Dense(6, use_bias=False, name='d')(x)
  y = L.BatchNormalization(name='bn')(y)
  y = L.ZeroPadding1D(2, name='pad')(y)
  y = L.GRU(3, return_sequences=True, name='r')(y)
  model = keras.Model(x, y)
  _random_weights(model)
  rebuild.rebuild(model, flop_regularizers.gamma_flops(model),
                  transfer_weights=True)
  inexact = _inexact(messages)
  assert len(inexact) == 1
  assert 'not exact for 1 layers' in inexact[0]
  assert "'r' (GRU)" in inexact[0]


def test_a_stack_of_recurrent_layers_folds_only_the_first():
  """The record's shape: a constant into a GRU, whose units keep their
  width, then a Bidirectional GRU summing its directions."""
  model = _model(L.GRU(2, return_sequences=True, name='r'),
                 after=L.Bidirectional(L.GRU(4, return_sequences=True),
                                       merge_mode='sum', name='bi'))
  regularizer = flop_regularizers.gamma_flops(model)
  unfolded = rebuild.rebuild(model, regularizer, transfer_weights=True,
                             fold_constants=False)
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  for old, new in zip(model.get_layer('bi').weights,
                      rebuilt.get_layer('bi').weights):
    np.testing.assert_array_equal(new.numpy(), old.numpy())
  want = _outputs(model)
  assert float(np.abs(_outputs(unfolded) - want).max()) > 1e-2
  np.testing.assert_allclose(_outputs(rebuilt), want, rtol=1e-5, atol=1e-5)


_RECORDED = '\n'.join([
    "t1 = keras.Input((3, 4), name='input0')",
    "t3 = L.MultiHeadAttention(key_dim=1, name='mha2', num_heads=2, "
    "value_dim=1)(t1, t1)",
    "t5 = L.MultiHeadAttention(key_dim=1, name='mha4', num_heads=1, "
    "output_shape=(1,), value_dim=1)(t3, t3)",
    "t7 = L.Dense(name='dense6', units=7, use_bias=False)(t5)",
    "t9 = L.BatchNormalization(name='bn8')(t7)",
    "t11 = L.ReLU(name='relu10')(t9)",
    "t13 = L.GRU(name='gru12', return_sequences=True, units=2)(t11)",
    "t15 = L.Bidirectional(L.GRU(return_sequences=True, units=4), "
    "merge_mode='sum', name='bi14')(t13)",
    "model = keras.Model(t1, t15)"])


def test_the_recorded_random_model(messages):
  """The third record of the 520-model run (outputs off by 0.09)."""
  case = random_models.RandomCase(
      code=_RECORDED, family='gamma', seed=40240, max_fraction=0.5,
      allow_all=False, constant=True)
  keras.utils.set_random_seed(case.seed)
  model = case.build()
  assert random_models.kill(model, case) == {'bn8': [4, 6]}
  regularizer = flop_regularizers.gamma_flops(model)
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert not _inexact(messages)
  data = np.random.default_rng(case.seed).normal(size=(2, 3, 4)).astype(
      'float32')
  np.testing.assert_allclose(
      keras.ops.convert_to_numpy(rebuilt(data, training=False)),
      keras.ops.convert_to_numpy(model(data, training=False)),
      rtol=1e-5, atol=1e-5)


def test_dead_units_are_zero_in_the_probe():
  """`RecurrentRule.constant_channels` zeroes every weight of the removed
  units of each direction: they output exactly 0, as rebuild assumes."""
  layer = L.Bidirectional(L.GRU(3, return_sequences=True), name='bi')
  x = keras.Input((4, 2))
  model = keras.Model(x, layer(x))
  rng = np.random.default_rng(0)
  for variable in layer.weights:
    variable.assign(rng.normal(0.0, 0.5, variable.shape).astype('float32'))
  weights = [v.numpy() for v in layer.weights]
  rule = builtin_rules.RecurrentRule()
  # Concatenated output: units 1 and 4 = 1 + 3 are one unit, twice.
  silenced = rule.constant_channels(layer, weights, np.array([1, 4]))
  layer.set_weights(silenced)
  out = keras.ops.convert_to_numpy(model(
      rng.normal(size=(2, 4, 2)).astype('float32')))
  np.testing.assert_array_equal(out[..., [1, 4]], 0.0)
  assert float(np.abs(out[..., [0, 2, 3, 5]]).min()) > 0.0
  # Only unit 1's weights changed: its gate columns (z, r, h of 3
  # units), and its row of the recurrent kernels.
  for variable, old, new in zip(layer.weights, weights, silenced):
    if variable.path.endswith('recurrent_kernel'):
      np.testing.assert_array_equal(new[1], 0.0)
      old, new = np.delete(old, 1, axis=0), np.delete(new, 1, axis=0)
    changed = np.flatnonzero(np.any(
        (old != new).reshape([-1, old.shape[-1]]), axis=0))
    assert changed.tolist() == [1, 4, 7]
  assert rule.constant_channels(layer, weights, np.array([], int)) is None


@pytest.mark.parametrize('recurrent', [
    lambda: L.GRU(3, return_sequences=True, name='r'),
    lambda: L.Bidirectional(L.LSTM(3, return_sequences=True),
                            merge_mode='concat', name='r')])
def test_group_lasso_dead_filters_into_a_recurrent_layer_losing_a_unit(
    recurrent, messages):
  """Dead filters keeping their bias (a constant) into a recurrent layer
  whose unit 1 is dead (every weight 0): the constant goes into the
  surviving units' input biases, and unit 1 (0 at every step) goes."""
  x = keras.Input((5, 3))
  y = L.Dense(6, name='d')(x)
  y = recurrent()(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  _random_weights(model)
  kernel = model.get_layer('d').kernel.numpy()
  kernel[:, _DEAD] = 0.0
  model.get_layer('d').kernel.assign(kernel)
  layer = model.get_layer('r')
  for rnn in builtin_rules.recurrent_directions(layer):
    for variable in rnn.weights:
      value = variable.numpy()
      gates = value.shape[-1] // 3
      value[..., [g * 3 + 1 for g in range(gates)]] = 0.0
      if variable.path.endswith('recurrent_kernel'):
        value[1] = 0.0
      variable.assign(value)
  regularizer = flop_regularizers.group_lasso_flops(model)
  assert regularizer.alive_counts() == {'d': 4, 'r': 2, 'logits': 2}
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert not _inexact(messages)
  for rnn in builtin_rules.recurrent_directions(rebuilt.get_layer('r')):
    assert tuple(rnn.cell.kernel.shape)[0] == 4 and int(rnn.units) == 2
  np.testing.assert_allclose(_outputs(rebuilt), _outputs(model), rtol=1e-5,
                             atol=1e-5)
