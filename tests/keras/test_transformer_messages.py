"""Messages on transformer encoders name the right layer (issue 22).

The residual stream of a transformer is one channel group frozen by several
layers (the embedding, every attention layer). The kept-layers warning used
to give the group's oldest reason ("'ffn2' ... is the output of layer
'embed'"; in a two-block model "'ffn2_1': it feeds layer 'mha0'"); it now
gives the reason of the freezing layer nearest to the named layer. With a
Gamma family, the no-source error says that layer-norm scales do not count.
"""

import logging

import keras
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import channel_model

L = keras.layers

_UNKNOWN = ', whose channel handling is unknown to rebuild'


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _encoder(blocks):
  """Embedding -> blocks x (MHA, Add+LN, FFN, Add+LN) -> pooling -> Dense."""
  x = keras.Input((12,), dtype='int32')
  h = L.Embedding(50, 16, name='embed')(x)
  for i in range(blocks):
    suffix = '' if i == 0 else '_%d' % i
    a = L.MultiHeadAttention(2, 8, name='mha%d' % i)(h, h)
    h = L.LayerNormalization(name='ln1' + suffix)(
        L.Add(name='add1' + suffix)([h, a]))
    f = L.Dense(32, activation='relu', name='ffn1' + suffix)(h)
    f = L.Dense(16, name='ffn2' + suffix)(f)
    h = L.LayerNormalization(name='ln2' + suffix)(
        L.Add(name='add2' + suffix)([h, f]))
  h = L.GlobalAveragePooling1D(name='pool')(h)
  return keras.Model(x, L.Dense(3, name='logits')(h))


def _warning(model, caplog):
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    morph_keras.ModelRegularizer(
        model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  (message,) = [r.getMessage() for r in caplog.records
                if 'Rebuild cannot narrow' in r.getMessage()]
  return message


def test_one_block_names_the_attention_layer(caplog):
  message = _warning(_encoder(1), caplog)
  assert message.startswith(
      "Rebuild cannot narrow the channels of 1 layer(s): 'ffn2': it feeds "
      "layer 'mha0' (MultiHeadAttention)%s." % _UNKNOWN), message
  assert 'embed' not in message


def test_two_blocks_name_the_second_attention_layer(caplog):
  message = _warning(_encoder(2), caplog)
  assert message.startswith(
      "Rebuild cannot narrow the channels of 2 layer(s): 'ffn2': it feeds "
      "layer 'mha1' (MultiHeadAttention)%s; 'ffn2_1': it feeds layer 'mha1' "
      '(MultiHeadAttention)%s.' % (_UNKNOWN, _UNKNOWN)), message


def test_frozen_reason_is_the_nearest_freezing_layer():
  channels = channel_model.analyze(_encoder(2))
  # The oldest reason of the residual stream is the embedding's ...
  assert channels.frozen_reasons('ffn2_1')[0] == (
      "it is the output of layer 'embed' (Embedding)" + _UNKNOWN)
  # ... the nearest to each FFN is the following attention layer's.
  assert channels.can_change_width('ffn2') == (
      False, "it feeds layer 'mha1' (MultiHeadAttention)" + _UNKNOWN)
  assert channels.frozen_reason('ffn2_1') == (
      "it feeds layer 'mha1' (MultiHeadAttention)" + _UNKNOWN)
  assert channels.frozen_reason('ffn1') is None


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
