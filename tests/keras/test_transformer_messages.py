"""Messages on transformer encoders name the right layer (issue 22).

The residual stream of a transformer is one channel group. Under
GroupLasso FLOPs regularizers it is pruned (the hidden size,
`morph_net.keras.hidden_size`), so no warning names it. When layers freeze
it (attention layers with another `output_shape`, which rebuild does not
understand), the kept-layers warning used to give the group's oldest
reason ("'ffn2' ... is the output of layer 'embed'"; in a two-block model
"'ffn2_1': it feeds layer 'mha0'"); it gives the reason of the freezing
layer nearest to the named layer. A regularizer that keeps the hidden size
names its layers. With a Gamma family, the no-source error says that
layer-norm scales do not count.
"""

import logging

import keras
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.surgery import channel_model

L = keras.layers

_UNKNOWN = ', whose channel handling is unknown to rebuild'


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _encoder(blocks, output_shape=None):
  """Embedding -> blocks x (MHA, Add+LN, FFN, Add+LN) -> pooling -> Dense;
  attention layers with `output_shape` (16,) are opaque to rebuild."""
  x = keras.Input((12,), dtype='int32')
  h = L.Embedding(50, 16, name='embed')(x)
  for i in range(blocks):
    suffix = '' if i == 0 else '_%d' % i
    a = L.MultiHeadAttention(2, 8, output_shape=output_shape,
                             name='mha%d' % i)(h, h)
    h = L.LayerNormalization(name='ln1' + suffix)(
        L.Add(name='add1' + suffix)([h, a]))
    f = L.Dense(32, activation='relu', name='ffn1' + suffix)(h)
    f = L.Dense(16, name='ffn2' + suffix)(f)
    h = L.LayerNormalization(name='ln2' + suffix)(
        L.Add(name='add2' + suffix)([h, f]))
  h = L.GlobalAveragePooling1D(name='pool')(h)
  return keras.Model(x, L.Dense(3, name='logits')(h))


def _messages(model, caplog, regularizer_class=None, **kwargs):
  caplog.clear()
  kwargs = kwargs or {'threshold': 1e-3}
  with caplog.at_level(logging.WARNING):
    regularizer = morph_keras.ModelRegularizer(
        model, regularizer_class or flop_regularizer.GroupLassoFlopsRegularizer,
        **kwargs)
  return regularizer, [r.getMessage() for r in caplog.records]


def _warning(model, caplog):
  _, messages = _messages(model, caplog)
  (message,) = [m for m in messages if 'Rebuild cannot narrow' in m]
  return message


def test_one_block_prunes_the_hidden_size_without_a_warning(caplog):
  regularizer, messages = _messages(_encoder(1), caplog)
  assert not [m for m in messages if 'Rebuild cannot narrow' in m or
              'Hidden size' in m], messages
  assert regularizer.alive_counts() == {'embed': 16, 'mha0': 2, 'ffn1': 32,
                                        'ffn2': 16, 'logits': 3}


def test_one_block_names_the_attention_layer(caplog):
  message = _warning(_encoder(1, output_shape=(16,)), caplog)
  assert message.startswith(
      "Rebuild cannot narrow the channels of 3 layer(s): 'embed': it feeds "
      "layer 'mha0' (MultiHeadAttention)%s; 'ffn2': it feeds layer 'mha0' "
      "(MultiHeadAttention)%s; 'mha0': it is the output of layer 'mha0' "
      '(MultiHeadAttention)%s.' % (_UNKNOWN, _UNKNOWN, _UNKNOWN)), message


def test_two_blocks_name_the_second_attention_layer(caplog):
  message = _warning(_encoder(2, output_shape=(16,)), caplog)
  assert message.startswith(
      "Rebuild cannot narrow the channels of 5 layer(s): 'embed': it feeds "
      "layer 'mha0' (MultiHeadAttention)%s; 'ffn2': it feeds layer 'mha1' "
      "(MultiHeadAttention)%s; 'ffn2_1': it feeds layer 'mha1' "
      "(MultiHeadAttention)%s; 'mha0': it is the output of layer 'mha0' "
      "(MultiHeadAttention)%s; 'mha1': it is the output of layer 'mha1' "
      '(MultiHeadAttention)%s.' % ((_UNKNOWN,) * 5)), message


def test_frozen_reason_is_the_nearest_freezing_layer():
  channels = channel_model.analyze(_encoder(2, output_shape=(16,)))
  # The oldest reason of the residual stream is the first attention's ...
  assert channels.frozen_reasons('ffn2_1')[0] == (
      "it feeds layer 'mha0' (MultiHeadAttention)" + _UNKNOWN)
  # ... the nearest to each FFN is the following attention layer's.
  assert channels.can_change_width('ffn2') == (
      False, "it feeds layer 'mha1' (MultiHeadAttention)" + _UNKNOWN)
  assert channels.frozen_reason('ffn2_1') == (
      "it feeds layer 'mha1' (MultiHeadAttention)" + _UNKNOWN)
  assert channels.frozen_reason('ffn1') is None
  # Without other output shapes nothing freezes the stream.
  assert channel_model.analyze(_encoder(2)).frozen_reason('ffn2_1') is None


def test_a_regularizer_keeping_the_hidden_size_names_its_layers(caplog):
  regularizer, messages = _messages(
      _encoder(2), caplog, latency_regularizer.GroupLassoLatencyRegularizer,
      threshold=1e-3, hardware='V100')
  assert [m for m in messages if 'Hidden size' in m] == [
      "Hidden size: layer(s) 'embed' (Embedding), 'ffn2' (Dense), 'ffn2_1' "
      '(Dense) keep their width: GroupLassoLatencyRegularizer regularizes no '
      'hidden size (its attention layers keep their heads: only GroupLasso '
      'regularizers of FLOPs or model size prune them).']
  assert not [m for m in messages if 'Rebuild cannot narrow' in m]
  # Kept whole (ffn2 has a GroupLasso source), the FFN inner widths pruned.
  assert regularizer.alive_counts() == {'ffn1': 32, 'ffn2': 16,
                                        'ffn1_1': 32, 'ffn2_1': 16,
                                        'logits': 3}


def test_gamma_family_says_layer_norm_scales_do_not_count():
  with pytest.raises(errors.NoSourceOpsError) as raised:
    morph_keras.ModelRegularizer(
        _encoder(1), flop_regularizer.GammaFlopsRegularizer,
        gamma_threshold=1e-3)
  message = str(raised.value)
  assert message.startswith(
      'GammaFlopsRegularizer found no batch norm with a learned scale '
      '(gamma) between the boundaries'), message
  assert message.endswith(
      "The learned scales of 'ln1' (LayerNormalization), 'ln2' "
      '(LayerNormalization) do not count: a layer norm (or group or RMS '
      'norm) normalises over its channels, so a channel whose scale is zero '
      "still changes the other channels' statistics and cannot be removed "
      'exactly; Gamma regularizers read batch-norm scales only. Use a '
      'GroupLasso regularizer (e.g. GroupLassoFlopsRegularizer) for this '
      'model.'), message
