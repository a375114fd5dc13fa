"""The layer-level regularizer's GroupLasso and LogisticSigmoid families.

Costs, terms and norms are counted by hand; `test_layer_regularizer_corpus`
checks the same family against the graph engine on the test corpus (on
TensorFlow).
"""

import keras
from keras import ops
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import layer_regularizer

L = keras.layers


def _one_by_one_conv():
  """x (2x2x4) -> c1 (1x1 conv, 4 filters) -> GAP -> logits (Dense 2).

  c1's filters over the 4 input channels: [1, 1, 1, 1] (root mean square
  1, mean |w| 1), [2, 0, 0, 0] (1, 0.5), zeros (0, 0), [0, 0, 0, 4] (2, 1).
  """
  x = keras.Input((2, 2, 4))
  y = L.Conv2D(4, 1, use_bias=False, name='c1')(x)
  y = L.GlobalAveragePooling2D(name='gap')(L.ReLU(name='relu')(y))
  model = keras.Model(x, L.Dense(2, use_bias=False, name='logits')(y),
                      name='one_by_one')
  kernel = np.zeros([1, 1, 4, 4], np.float32)
  kernel[0, 0, :, 0] = 1.0
  kernel[0, 0, 0, 1] = 2.0
  kernel[0, 0, 3, 3] = 4.0
  model.get_layer('c1').kernel.assign(kernel)
  return model


def _group_lasso(model, name='GroupLassoFlopsRegularizer', **kwargs):
  kwargs.setdefault('threshold', 1e-3)
  return layer_regularizer.LayerRegularizer(model, name, **kwargs)


def test_group_lasso_flops_by_hand():
  regularizer = _group_lasso(_one_by_one_conv())
  assert regularizer.name == 'GroupLassoFlops'
  assert regularizer.cost_name == 'FLOPs'
  assert regularizer.alive_threshold == 1e-3
  np.testing.assert_array_equal(
      regularizer.regularization_vectors()['c1'],
      np.array([1.0, 1.0, 0.0, 2.0], np.float32))
  assert regularizer.alive_counts() == {'c1': 3, 'logits': 2}
  # c1: 2 x 4 positions x 4 inputs x 3 alive; logits: 2 x 3 x 2.
  assert float(regularizer.cost()) == 96 + 12
  # c1: 8 x 4 inputs x (1 + 1 + 0 + 2); logits: 2 x 2 outputs x 4.
  assert float(regularizer.term()) == 128 + 16


def test_group_lasso_l1_fraction_mixes_the_mean_absolute_value():
  regularizer = _group_lasso(_one_by_one_conv(), l1_fraction=0.5)
  np.testing.assert_array_equal(
      regularizer.regularization_vectors()['c1'],
      np.array([1.0, 0.75, 0.0, 1.5], np.float32))
  # (8 x 4 + 2 x 2) x 3.25.
  assert float(regularizer.term()) == 117.0
  assert float(regularizer.cost()) == 108.0


def test_group_lasso_model_size_by_hand():
  regularizer = _group_lasso(_one_by_one_conv(),
                             'GroupLassoModelSizeRegularizer')
  assert regularizer.name == 'GroupLassoModelSize'
  # c1: 4 x 3 weights; logits: 3 x 2.
  assert float(regularizer.cost()) == 12 + 6
  # c1: 4 x 4; logits: 2 x 4.
  assert float(regularizer.term()) == 16 + 8


def test_group_lasso_threshold_is_strict():
  model = _one_by_one_conv()
  regularizer = _group_lasso(model, threshold=1.0)
  assert regularizer.alive_counts() == {'c1': 1, 'logits': 2}
  assert float(regularizer.cost()) == 32 + 4


def test_group_lasso_vector_of_a_transposed_kernel_reads_axis_minus_two():
  kernel = np.zeros([1, 3, 2], np.float32)  # [k, out, in].
  kernel[0, 0, :] = [3.0, 4.0]
  kernel[0, 2, :] = [1.0, 1.0]
  vector = layer_regularizer.group_lasso_vector(kernel, -2)
  np.testing.assert_allclose(ops.convert_to_numpy(vector),
                             [np.sqrt(12.5), 0.0, 1.0], rtol=1e-7)


def test_kernel_filters_of_each_layer_kind():
  x = keras.Input((6, 6, 4))
  layers = {
      'conv': L.Conv2D(3, 3, name='conv'),
      'transpose': L.Conv2DTranspose(3, 3, name='transpose'),
      'separable': L.SeparableConv2D(3, 3, name='separable'),
      'depthwise': L.DepthwiseConv2D(3, name='depthwise'),
      'dense': L.Dense(3, name='dense'),
      'grouped': L.Conv2D(6, 3, groups=2, name='grouped'),
      'channelwise': L.Conv2D(4, 3, groups=4, name='channelwise'),
      'norm': L.BatchNormalization(name='norm'),
  }
  for layer in layers.values():
    layer(x)
  kinds = {name: layer_regularizer.kernel_filters(layer)
           for name, layer in layers.items()}
  assert kinds['conv'] == (layers['conv'].kernel, -1)
  assert kinds['transpose'] == (layers['transpose'].kernel, -2)
  assert kinds['separable'] == (layers['separable'].pointwise_kernel, -1)
  assert kinds['dense'] == (layers['dense'].kernel, -1)
  assert kinds['grouped'] == (layers['grouped'].kernel, -1)
  assert kinds['depthwise'] is None and kinds['norm'] is None
  assert kinds['channelwise'] is None


def test_group_lasso_arguments_are_checked():
  model = _one_by_one_conv()
  with pytest.raises(errors.InvalidArgumentError) as e:
    _group_lasso(model, threshold=None, gamma_threshold=1e-3)
  assert str(e.value) == (
      'Invalid arguments for GroupLassoFlopsRegularizer in the layer-level '
      'regularizer: it takes threshold (required), l1_fraction. Received: '
      "['gamma_threshold', 'threshold']")
  with pytest.raises(errors.InvalidArgumentError) as e:
    layer_regularizer.LayerRegularizer(model, 'GroupLassoFlopsRegularizer',
                                       l1_fraction=0.5)
  assert str(e.value) == (
      'Invalid arguments for GroupLassoFlopsRegularizer in the layer-level '
      'regularizer: it takes threshold (required), l1_fraction. Received: '
      "['l1_fraction']")
  with pytest.raises(errors.InvalidArgumentError) as e:
    _group_lasso(model, l1_fraction=1.5)
  assert str(e.value) == (
      'Invalid value for argument `l1_fraction`. Expected a number in '
      '[0, 1]. Received: l1_fraction=1.5')


def test_group_lasso_prunes_recurrent_units_by_their_weights():
  x = keras.Input((3, 2))
  y = L.SimpleRNN(2, name='rnn')(x)
  model = keras.Model(x, L.Dense(2, use_bias=False, name='logits')(y))
  rnn = model.get_layer('rnn')
  rnn.cell.kernel.assign(np.array([[1.0, 0.0], [1.0, 0.0]], np.float32))
  rnn.cell.recurrent_kernel.assign(
      np.array([[2.0, 0.0], [0.0, 0.0]], np.float32))
  rnn.cell.bias.assign(np.zeros([2], np.float32))
  regularizer = _group_lasso(model)
  # Unit 0: kernel column [1, 1], recurrent column [2, 0], recurrent row
  # without its own entry [0], bias [0]: root mean square 1. Unit 1: 0.
  np.testing.assert_array_equal(
      ops.convert_to_numpy(layer_regularizer.recurrent_unit_weights(rnn)),
      np.array([[1, 0], [1, 0], [2, 0], [0, 0], [0, 0], [0, 0]],
               np.float32))
  np.testing.assert_array_equal(regularizer.regularization_vectors()['rnn'],
                                np.array([1.0, 0.0], np.float32))
  assert regularizer.alive_counts() == {'rnn': 1, 'logits': 2}
  # rnn: 2 x 3 steps x 1 alive unit x (2 inputs + 1); logits 2 x 1 x 2.
  assert float(regularizer.cost()) == 18 + 4
  # rnn: 6 x (2 inputs x 1 + 2 x 1 alive x 1); logits: 2 x 2 x 1.
  assert float(regularizer.term()) == 24 + 4


def test_group_lasso_without_a_regularizable_kernel_has_no_sources():
  x = keras.Input((4, 4, 3))
  y = L.DepthwiseConv2D(3, name='dw')(x)
  model = keras.Model(x, L.Dense(2, name='logits')(L.Flatten()(y)),
                      name='only_outputs')
  with pytest.raises(errors.NoSourceOpsError) as e:
    _group_lasso(model)
  assert str(e.value) == (
      "Model 'only_outputs' has no channel group the layer-level "
      'GroupLassoFlopsRegularizer can regularize: it needs a conv, Dense or '
      'EinsumDense layer whose output channels rebuild can narrow and that '
      'does not reach a model output.')


def test_fit_with_a_zero_filter_keeps_the_weights_finite():
  model = _one_by_one_conv()
  regularizer = _group_lasso(model, strength=1e-2)
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(
                    lambda y_true, y_pred: ops.zeros_like(y_pred[:, 0])))
  model.fit(np.ones((2, 2, 2, 4), np.float32), np.zeros((2, 2), np.float32),
            batch_size=2, epochs=1, verbose=0)
  kernel = ops.convert_to_numpy(model.get_layer('c1').kernel)
  # d term / d r = 8 x 4 + 2 x 2 = 36 per channel; d r / d w of filter
  # [1, 1, 1, 1] is w / (4 r) = 0.25; the zero filter has a zero gradient.
  np.testing.assert_allclose(kernel[0, 0, :, 0],
                             np.full([4], 1.0 - 0.1 * 1e-2 * 36 * 0.25),
                             rtol=1e-6)
  np.testing.assert_array_equal(kernel[0, 0, :, 2], np.zeros([4]))


# ------------------------------------------------------ LogisticSigmoid.

_needs_gates = pytest.mark.skipif(
    keras.backend.backend() != 'tensorflow',
    reason='the gating layer (morph_net.probabilistic_gating) needs '
    'TensorFlow')


def _gate(name, log_odds):
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  return activation_gating.LogisticSigmoidGating(
      name=name, log_odds_init=keras.initializers.Constant(log_odds))


def _gated_conv(log_odds):
  """x (2x2x4) -> c1 (1x1 conv, 4 filters) -> gate g1 -> GAP -> logits."""
  x = keras.Input((2, 2, 4))
  y = L.Conv2D(4, 1, use_bias=False, name='c1')(x)
  y = _gate('g1', log_odds)(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, use_bias=False, name='logits')(y))


def _logistic(model, name='LogisticSigmoidFlopsRegularizer', **kwargs):
  return layer_regularizer.LayerRegularizer(model, name, **kwargs)


@_needs_gates
def test_logistic_sigmoid_regularizes_the_inference_mask():
  model = _gated_conv([-2.0, -1.0, 3.0, -2.0])
  regularizer = _logistic(model)
  assert regularizer.name == 'LogisticSigmoidFlops'
  assert regularizer.alive_threshold == 0.1
  # Channel 0 is kept open (keep_first_channel_alive).
  np.testing.assert_array_equal(regularizer.regularization_vectors()['c1'],
                                np.array([1.0, 0.0, 1.0, 0.0], np.float32))
  assert regularizer.alive_counts() == {'c1': 2}
  # c1: 8 x 4 inputs x 2 alive; logits: 2 x 2 x 2. The term: the same
  # with the alive outputs of c1 replaced by the mask's sum (2).
  assert float(regularizer.cost()) == 64 + 8
  assert float(regularizer.term()) == 64 + 8
  size = _logistic(model, 'LogisticSigmoidModelSizeRegularizer')
  assert size.name == 'LogisticSigmoidModelSize'
  assert float(size.cost()) == 4 * 2 + 2 * 2


@_needs_gates
def test_logistic_sigmoid_on_the_probability():
  log_odds = np.array([2.0, -1.0, 3.0, -0.5], np.float32)
  model = _gated_conv(log_odds)
  regularizer = _logistic(model, regularize_on_mask=False,
                          mask_as_alive_vector=False, alive_threshold=0.3)
  probability = 1.0 / (1.0 + np.exp(-log_odds.astype(np.float64)))
  np.testing.assert_allclose(regularizer.regularization_vectors()['c1'],
                             probability, rtol=1e-6)
  # p = 0.88, 0.27, 0.95, 0.38: three at or above 0.3.
  assert regularizer.alive_counts() == {'c1': 3}
  assert float(regularizer.cost()) == 8 * 4 * 3 + 2 * 3 * 2
  assert float(regularizer.term()) == pytest.approx(
      (8 * 4 + 2 * 2) * probability.sum(), rel=1e-6)


@_needs_gates
def test_two_gates_of_one_group_combine_as_any_gate_open():
  x = keras.Input((2, 2, 4))
  a = _gate('g1', [1.0, 1.0, -1.0, -1.0])(
      L.Conv2D(4, 1, use_bias=False, name='c1')(x))
  b = _gate('g2', [1.0, -1.0, 1.0, -1.0])(
      L.Conv2D(4, 1, use_bias=False, name='c2')(x))
  y = L.GlobalAveragePooling2D(name='gap')(L.Add(name='add')([a, b]))
  model = keras.Model(x, L.Dense(2, use_bias=False, name='logits')(y))
  regularizer = _logistic(model)
  np.testing.assert_array_equal(regularizer.regularization_vectors()['c1'],
                                np.array([1.0, 1.0, 1.0, 0.0], np.float32))
  assert regularizer.alive_counts() == {'c1': 3, 'c2': 3}
  # c1, c2: 8 x 4 x 3 each; logits 2 x 3 x 2.
  assert float(regularizer.cost()) == 96 + 96 + 12
  assert float(regularizer.term()) == 96 + 96 + 12


def test_logistic_sigmoid_arguments_are_checked():
  model = _one_by_one_conv()
  with pytest.raises(errors.InvalidArgumentError) as e:
    _logistic(model, threshold=0.1)
  assert str(e.value) == (
      'Invalid arguments for LogisticSigmoidFlopsRegularizer in the '
      'layer-level regularizer: it takes alive_threshold, '
      "mask_as_alive_vector, regularize_on_mask. Received: ['threshold']")
  with pytest.raises(errors.InvalidArgumentError) as e:
    _logistic(model, regularize_on_mask='yes')
  assert str(e.value) == (
      'Invalid value for argument `regularize_on_mask`. Expected True or '
      "False. Received: regularize_on_mask='yes'")
  with pytest.raises(errors.InvalidArgumentError) as e:
    _logistic(model, alive_threshold=-1)
  assert str(e.value) == (
      'Invalid value for argument `alive_threshold`. Expected a '
      'non-negative finite number. Received: alive_threshold=-1.0')


def test_logistic_sigmoid_without_gates_has_no_sources():
  with pytest.raises(errors.NoSourceOpsError) as e:
    _logistic(_one_by_one_conv())
  assert str(e.value) == (
      "Model 'one_by_one' has no channel group the layer-level "
      'LogisticSigmoidFlopsRegularizer can regularize: it needs '
      'LogisticSigmoidGating layers (morph_net.probabilistic_gating) over '
      'the last axis on channels that rebuild can narrow. Add a gate after '
      'each convolution.')
