"""The differential-test tools: corpus coverage, reference counts, dead patterns.

The reference counts are checked against arithmetic done by hand here, so a
differential test that compares MorphNet's cost with them compares with
something known to be right.
"""

import keras
import numpy as np
import pytest

from morph_net.testing import config_flops
from morph_net.testing import dead_channels
from morph_net.testing import flop_regularizers
from morph_net.testing import keras_corpus
from morph_net.testing import reference_cost

L = keras.layers

# Every Keras 3 core layer kind with channels the corpus promises (issue 12).
_REQUIRED = [
    'Conv1D', 'Conv2D', 'Conv3D', 'Conv1DTranspose', 'Conv2DTranspose',
    'Conv3DTranspose', 'SeparableConv1D', 'SeparableConv2D',
    'DepthwiseConv1D', 'DepthwiseConv2D', 'Dense', 'Flatten', 'Reshape',
    'UpSampling1D', 'UpSampling2D', 'UpSampling3D', 'Cropping1D',
    'Cropping2D', 'Cropping3D', 'ZeroPadding1D', 'ZeroPadding2D',
    'ZeroPadding3D', 'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D',
    'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D',
    'GlobalAveragePooling1D', 'GlobalAveragePooling2D',
    'GlobalAveragePooling3D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D',
    'GlobalMaxPooling3D', 'Concatenate', 'Add', 'Subtract', 'Multiply',
    'Average', 'Maximum', 'Minimum', 'BatchNormalization',
    'LayerNormalization', 'Dropout', 'SpatialDropout2D', 'GaussianNoise',
    'GaussianDropout', 'AlphaDropout', 'MultiHeadAttention', 'SimpleRNN',
    'GRU', 'LSTM', 'Bidirectional', 'Functional', 'Sequential', 'Permute']


@pytest.fixture(scope='module')
def corpus_models():
  return {entry.name: entry.build() for entry in keras_corpus.CORPUS}


def test_corpus_covers_every_layer_kind(corpus_models):
  assert len(corpus_models) >= 30
  covered = {t.__name__ for t in
             keras_corpus.covered_layer_types(corpus_models.values())}
  assert not set(_REQUIRED) - covered
  # Shared layers, several inputs and several outputs are in it too.
  assert len(corpus_models['multi_output'].outputs) == 2
  assert len(corpus_models['shared_layers'].inputs) == 2
  shared = corpus_models['shared_layers'].get_layer('shared')
  assert len(shared._inbound_nodes) == 2  # pylint: disable=protected-access


def test_get_names_unknown_entry():
  assert keras_corpus.names()[0] == 'flatten_head'
  with pytest.raises(KeyError, match=r"No corpus model 'nope'; known: \["):
    keras_corpus.get('nope')


@pytest.mark.parametrize('name,flops,weights', [
    # conv1 2*144*9*1*16 + conv2 2*36*9*16*32 + fc1 2*1152*24 + logits
    # 2*24*10; weights 144 + 4608 + 27648 + 240.
    ('flatten_head', 41472 + 331776 + 55296 + 480, 32640),
    # embed 2*10*4*8; per LSTM direction 2*10*4*6*(8+6); fc 2*12*12;
    # logits 2*12*3; weights 32 + 2*(8*24 + 6*24) + 144 + 36.
    ('bidirectional_lstm', 640 + 2 * 6720 + 288 + 72, 884),
    # c 2*64*9*3*8; grouped g 2*36*9*(8/4)*16; p 2*36*16*4; logits 2*4*2.
    ('grouped_conv', 27648 + 20736 + 4608 + 16, 216 + 288 + 64 + 8),
    # enc 2*25*9*3*8; transposed 'up' (valid, stride 2) from its 5x5 input
    # 2*25*9*8*6; dec on 11x11: 2*121*9*6*4; logits 2*4*2.
    ('conv_transpose_2d', 10800 + 21600 + 52272 + 16, 216 + 432 + 216 + 8),
    # embed 2*6*8*16; q, k, v projections 3*2*6*16*8 and the output
    # projection 2*6*8*16; attention products 2*2*6*6*(4+4); ffn1
    # 2*6*16*32, ffn2 2*6*32*16; logits 2*16*3.
    ('attention_block', 1536 + 3 * 1536 + 1536 + 1152 + 6144 + 6144 + 96,
     128 + 4 * 128 + 512 + 512 + 48),
])
def test_reference_counts_by_hand(name, flops, weights):
  model = keras_corpus.get(name).build()
  assert reference_cost.reference_flops(model) == flops
  assert reference_cost.reference_weights(model) == weights


def test_zero_gammas_is_seeded_and_keeps_a_channel():
  model = keras_corpus.get('residual').build()
  killed = dead_channels.zero_gammas(model, seed=3, max_fraction=1.0,
                                     layer_probability=1.0)
  assert set(killed) == {l.name for l in model.layers
                         if isinstance(l, L.BatchNormalization)}
  for name, dead in killed.items():
    gamma = model.get_layer(name).gamma.numpy()
    assert np.all(gamma[dead] == 0) and np.count_nonzero(gamma) == (
        gamma.size - dead.size) and dead.size < gamma.size
  again = keras_corpus.get('residual').build()
  same = dead_channels.zero_gammas(again, seed=3, max_fraction=1.0,
                                   layer_probability=1.0)
  assert {k: list(v) for k, v in same.items()} == {
      k: list(v) for k, v in killed.items()}


def test_zero_filters_uses_the_output_axis():
  model = keras_corpus.get('conv_transpose_2d').build()
  killed = dead_channels.zero_filters(model, seed=0, max_fraction=1.0,
                                      layer_probability=1.0, allow_all=True)
  up = model.get_layer('up')  # Conv2DTranspose: kernel (3, 3, 6, 8).
  kernel = up.kernel.numpy()
  dead = killed['up']
  assert np.all(kernel[:, :, dead, :] == 0)
  alive = np.setdiff1d(np.arange(6), dead)
  assert np.all(np.abs(kernel[:, :, alive, :]).sum(axis=(0, 1, 3)) > 0)


def test_zero_filters_zeroes_the_pointwise_kernel_of_separable_convs():
  model = keras_corpus.get('separable_2d').build()
  depthwise_before = model.get_layer('sep1').depthwise_kernel.numpy()
  killed = dead_channels.zero_filters(model, seed=0, max_fraction=1.0,
                                      layer_probability=1.0)
  sep1 = model.get_layer('sep1')  # pointwise kernel (1, 1, 16, 12).
  pointwise = sep1.pointwise_kernel.numpy()
  dead = killed['sep1']
  assert 0 < len(dead) < 12
  assert np.all(pointwise[..., dead] == 0)
  alive = np.setdiff1d(np.arange(12), dead)
  assert np.all(np.abs(pointwise[..., alive]).sum(axis=(0, 1, 2)) > 0)
  np.testing.assert_array_equal(depthwise_before,
                                sep1.depthwise_kernel.numpy())


# (layer, input shape, hand count of the layer: 2 x output positions x
# kernel taps x (inputs / groups) x filters, TF's padded SpaceToBatchND
# blocks not counted). The Dense(2) after it adds 2 x positions x filters x 2.
_DILATED_CONVS = [
    # 'same', kernel 2, rate 2 on 7 steps: 7 outputs (TF pads the steps to
    # 8, two blocks of 4, and its statistic read 2 x 8 x 2 x 3 x 4 = 384).
    (lambda: L.Conv1D(4, 2, dilation_rate=2, padding='same', name='c'),
     (7, 3), 7, 2 * 7 * 2 * 3 * 4),
    # 'causal': 7 outputs.
    (lambda: L.Conv1D(4, 2, dilation_rate=2, padding='causal', name='c'),
     (7, 3), 7, 2 * 7 * 2 * 3 * 4),
    # 'valid', kernel 3, rate 3 on 11 steps: 11 - 6 = 5 outputs.
    (lambda: L.Conv1D(4, 3, dilation_rate=3, padding='valid', name='c'),
     (11, 3), 5, 2 * 5 * 3 * 3 * 4),
    # 'same', kernel 3, rate 4 on 10 steps: 10 outputs.
    (lambda: L.Conv1D(6, 3, dilation_rate=4, padding='same', name='c'),
     (10, 2), 10, 2 * 10 * 3 * 2 * 6),
    # Grouped (2 groups), 'valid', kernel 2, rate 2 on 7 steps: 5 outputs.
    (lambda: L.Conv1D(4, 2, groups=2, dilation_rate=2, padding='valid',
                      name='c'),
     (7, 4), 5, 2 * 5 * 2 * 2 * 4),
    # 2-D 'same', kernel 2, rate 2 on 7 x 6: 42 outputs.
    (lambda: L.Conv2D(4, 2, dilation_rate=2, padding='same', name='c'),
     (7, 6, 3), 42, 2 * 42 * 4 * 3 * 4),
    # 2-D 'valid', kernel 3, rate (2, 1) on 7 x 6: 3 x 4 outputs.
    (lambda: L.Conv2D(4, 3, dilation_rate=(2, 1), padding='valid',
                      name='c'),
     (7, 6, 3), 12, 2 * 12 * 9 * 3 * 4),
    # 2-D 'valid', kernel 2, rate 3 on 8 x 9: 5 x 6 outputs.
    (lambda: L.Conv2D(5, 2, dilation_rate=3, padding='valid', name='c'),
     (8, 9, 2), 30, 2 * 30 * 4 * 2 * 5),
]


@pytest.mark.parametrize('make, shape, positions, layer_flops',
                         _DILATED_CONVS)
def test_reference_counts_a_dilated_conv_like_the_layer(
    make, shape, positions, layer_flops):
  """reference_cost, config_flops and get_cost() agree on a dilated
  regular convolution, with the hand count (not TF's padded blocks)."""
  keras.backend.clear_session()
  x = keras.Input(shape)
  model = keras.Model(x, L.Dense(2, name='logits')(make()(x)))
  filters = model.get_layer('c').filters
  want = layer_flops + 2 * positions * filters * 2
  assert reference_cost.reference_flops(model) == want
  assert config_flops.config_flops(model) == want
  assert float(flop_regularizers.group_lasso_flops(model).cost()) == want
