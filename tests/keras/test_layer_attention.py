"""MultiHeadAttention under GroupLasso on the layer-level engine.

CI runs this file under TensorFlow and, without TensorFlow, under
KERAS_BACKEND=jax and KERAS_BACKEND=torch (.ci/run). The heads and the
hidden size are pruned as the graph engine prunes them
(`morph_net.keras.attention`, `morph_net.keras.hidden_size`): each head by
the group lasso of its weights, the hidden size by the group lasso of
every weight holding a hidden channel (`morph_net.keras.hidden_members`).
The values are counted by hand; on TensorFlow the graph engine gives the
same.

The model (`_model`): embed Dense(4) on 2 steps of 3 channels, a
self-attention of 2 heads (key_dim = value_dim = 1) added back (res), an
average over the steps, fc Dense(3) and logits Dense(2). With d alive
hidden channels, H alive heads and f alive fc channels, its FLOPs are

  embed 2 x 2 x 3 d + H x (query, key, value, output 4 x 2 x 2 d
  + products 2 x 2 x 2 x (1 + 1)) + fc 2 d f + logits 2 x 2 f
  = 12 d + H (16 d + 16) + 2 d f + 4 f

and its weights 3 d + H x 4 d + d f + 2 f.
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import hidden_members
from morph_net.keras import layer_regularizer
from morph_net.keras import layer_structure_cost
from morph_net.surgery import rebuild

L = keras.layers
_ON_TF = keras.backend.backend() == 'tensorflow'
_THRESHOLD = 1e-3


def _model(key_dim=1):
  """Every weight 1 (biases too)."""
  keras.backend.clear_session()
  x = keras.Input((2, 3))
  h = L.Dense(4, name='embed')(x)
  a = L.MultiHeadAttention(num_heads=2, key_dim=key_dim, name='mha')(h, h)
  y = L.GlobalAveragePooling1D(name='pool')(L.Add(name='res')([h, a]))
  y = L.Dense(3, name='fc')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  for variable in model.weights:
    variable.assign(np.ones(variable.shape, np.float32))
  return model


def _zero(variable, index):
  value = keras.ops.convert_to_numpy(variable).copy()
  value[index] = 0.0
  variable.assign(value)


def _kill(model):
  """Head 1 and hidden channels 0 and 2: every weight that dies with them
  set to 0."""
  mha = model.get_layer('mha')
  for dense in (mha._query_dense, mha._key_dense, mha._value_dense):  # pylint: disable=protected-access
    _zero(dense.kernel, (slice(None), 1))      # (hidden, heads, dim).
    _zero(dense.bias, 1)                       # (heads, dim).
    _zero(dense.kernel, [0, 2])                # Rows of hidden 0, 2.
  output = mha._output_dense  # pylint: disable=protected-access
  _zero(output.kernel, 1)                      # (heads, dim, hidden).
  _zero(output.kernel, (Ellipsis, [0, 2]))
  _zero(output.bias, [0, 2])
  embed = model.get_layer('embed')
  _zero(embed.kernel, (slice(None), [0, 2]))
  _zero(embed.bias, [0, 2])
  _zero(model.get_layer('fc').kernel, [0, 2])


def _flops(d, heads, f=3):
  return 12 * d + heads * (16 * d + 16) + 2 * d * f + 4 * f


def _size(d, heads, f=3):
  return 3 * d + heads * 4 * d + d * f + 2 * f


def _engines(model, name, **kwargs):
  """The layer-level regularizer, and on TensorFlow the graph engine's."""
  engines = [layer_regularizer.LayerRegularizer(
      model, name, threshold=_THRESHOLD, **kwargs)]
  if _ON_TF:
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    engines.append(morph_keras.ModelRegularizer(
        model, name, threshold=_THRESHOLD, **kwargs))
  return engines


@pytest.mark.parametrize('name, cost', [
    ('GroupLassoFlopsRegularizer', _flops),
    ('GroupLassoModelSizeRegularizer', _size)])
def test_heads_and_hidden_size_die_as_in_the_graph_engine(name, cost):
  model = _model()
  engines = _engines(model, name)
  for engine in engines:
    assert engine.alive_counts() == {'embed': 4, 'mha': 2, 'fc': 3,
                                     'logits': 2}
    assert float(engine.cost()) == cost(4, 2) == {
        'GroupLassoFlopsRegularizer': 244, 'GroupLassoModelSizeRegularizer':
            62}[name]
  _kill(model)
  for engine in engines:
    # logits reaches the model output: kept.
    assert engine.alive_counts() == {'embed': 2, 'mha': 1, 'fc': 3,
                                     'logits': 2}
    assert float(engine.cost()) == cost(2, 1) == {
        'GroupLassoFlopsRegularizer': 96, 'GroupLassoModelSizeRegularizer':
            26}[name]
  if name != 'GroupLassoFlopsRegularizer':
    return
  # An alive hidden channel holds 16 weights: embed column and bias (4),
  # its query, key and value rows (2 each), output column and bias (3),
  # fc row (3). Its value counts the 12 rebuild keeps (not dead head 1's
  # query, key, value and output entries), all 1: 1 (over all 16 it was
  # sqrt(12/16); `hidden_members.kept_member_weights`). Head 0 holds 19:
  # query, key and value columns (4 each) and biases (1 each), output rows
  # (4); 11 are 1 (hidden 0 and 2's are 0): sqrt(11/19). An fc filter
  # (its kernel column, as a Dense's in the graph engine): 2 of 4 rows are
  # 1: sqrt(1/2). FLOPs term, with R, S, F the sums
  # of the hidden size (2 alive), the heads (1) and fc (3): embed 12 R +
  # attention 16 (d S + H R) + products 16 S + fc 2 (d F + f R) + logits
  # 4 F = 34 R + 48 S + 8 F.
  hidden, head, fc = 1.0, np.sqrt(11 / 19), np.sqrt(1 / 2)
  want = 34 * 2 * hidden + 48 * head + 8 * 3 * fc
  for engine in engines:
    assert float(engine.term()) == pytest.approx(want, rel=1e-6)
    vectors = engine.regularization_vectors()
    np.testing.assert_allclose(vectors['embed'], [0, hidden, 0, hidden],
                               rtol=1e-6)
    np.testing.assert_allclose(vectors['mha'], [head, 0], rtol=1e-6)


def test_the_rebuilt_model_costs_what_the_regularizer_said():
  # key_dim 2 (with key_dim 1 Keras 3.15's query, key and value
  # projections add their (heads, 1) bias by step, not by head, so removing
  # a dead head changes the outputs): per head 16 x 2 (d + 1) FLOPs, so
  # 12 x 2 + 96 + 2 x 2 x 3 + 4 x 3 = 144.
  model = _model(key_dim=2)
  _kill(model)
  regularizer = layer_regularizer.LayerRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=_THRESHOLD)
  structure = regularizer.alive_counts()
  assert structure == {'embed': 2, 'mha': 1, 'fc': 3, 'logits': 2}
  assert float(regularizer.cost()) == 144
  assert layer_structure_cost.LayerStructureCost(regularizer).cost(
      structure) == 144
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('mha').num_heads == 1
  fresh = layer_regularizer.LayerRegularizer(
      rebuilt, 'GroupLassoFlopsRegularizer', threshold=_THRESHOLD)
  assert fresh.alive_counts() == structure
  assert float(fresh.cost()) == 144
  # The removed head and hidden channels held zeros only: same outputs.
  x = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)
  np.testing.assert_allclose(keras.ops.convert_to_numpy(rebuilt(x)),
                             keras.ops.convert_to_numpy(model(x)),
                             rtol=1e-5, atol=1e-5)


def test_the_l1_fraction_enters_heads_and_hidden_size():
  model = _model()
  _kill(model)
  # (1 - 0.5) x rms + 0.5 x mean |w|: hidden 1 (its 12 kept weights),
  # head 11/19, fc 1/2.
  hidden = 1.0
  head = 0.5 * np.sqrt(11 / 19) + 0.5 * 11 / 19
  fc = 0.5 * np.sqrt(1 / 2) + 0.5 * 1 / 2
  for engine in _engines(model, 'GroupLassoFlopsRegularizer',
                         l1_fraction=0.5):
    assert float(engine.term()) == pytest.approx(
        34 * 2 * hidden + 48 * head + 8 * 3 * fc, rel=1e-6)


def test_min_channels_keeps_a_hidden_channel_alive():
  model = _model()
  _kill(model)
  _zero(model.get_layer('embed').kernel, (slice(None), [1, 3]))
  for engine in _engines(model, 'GroupLassoFlopsRegularizer'):
    # Hidden 1 and 3 still hold their attention and fc weights.
    assert engine.alive_counts()['embed'] == 2
  for variable in model.weights:  # Every weight dies.
    variable.assign(np.zeros(variable.shape, np.float32))
  for engine in _engines(model, 'GroupLassoFlopsRegularizer'):
    # The hidden size and fc connect the input to the logits: one channel
    # of each stays (the heads do not: the residual connects without
    # them).
    assert engine.alive_counts() == {'embed': 1, 'mha': 0, 'fc': 1,
                                     'logits': 2}
    assert float(engine.cost()) == _flops(1, 0, 1) == 18


def test_activation_counts_keep_heads_and_hidden_size():
  # Activation counts keep the heads and the hidden size (their count is
  # not costed from the number of heads); the graph engine counts the
  # output channels of the ops the attention traces to: query, key and
  # value projections 2 heads x 2 each, the scores 2 (key steps), the
  # attention times values 2 (value_dim), the output 4; embed 4, fc 3,
  # logits 2. fc's 3 filters are sqrt(1/2) each. (With key_dim 1 the graph
  # engine cannot group the projections' squeezed outputs.)
  model = _model(key_dim=2)
  _kill(model)
  for engine in _engines(model, 'GroupLassoActivationRegularizer'):
    assert engine.alive_counts() == {'embed': 4, 'fc': 3, 'logits': 2}
    assert float(engine.cost()) == 4 + (4 + 4 + 4 + 2 + 2 + 4) + 3 + 2
    assert float(engine.term()) == pytest.approx(3 * np.sqrt(1 / 2),
                                                 rel=1e-6)


def test_gamma_activation_counts_the_attention_as_the_graph_engine():
  # fc 6 (the hidden size: kept), attention: query, key, value 2 heads x 3,
  # scores 5 (key steps), attention times values 3, output 6; post 5 minus
  # its dead, logits 2.
  keras.backend.clear_session()
  x = keras.Input((5, 3))
  y = L.BatchNormalization(name='bn')(L.Dense(6, name='fc')(x))
  y = L.MultiHeadAttention(2, 3, name='mha')(y, y)
  y = L.BatchNormalization(name='post_bn')(L.Dense(5, name='post')(y))
  y = L.Flatten(name='flatten')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  engines = [layer_regularizer.LayerRegularizer(
      model, 'GammaActivationRegularizer', gamma_threshold=_THRESHOLD)]
  if _ON_TF:
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    engines.append(morph_keras.ModelRegularizer(
        model, 'GammaActivationRegularizer', gamma_threshold=_THRESHOLD))
  _zero(model.get_layer('post_bn').gamma, [0, 2, 3])
  for engine in engines:
    assert engine.alive_counts() == {'fc': 6, 'post': 2}
    assert float(engine.cost()) == 6 + (6 + 6 + 6 + 5 + 3 + 6) + 2 + 2
    assert float(engine.term()) == 2.0  # post: its gammas, 2 alive (1 each).


@pytest.mark.parametrize('name', ['GroupLassoFlopsRegularizer',
                                  'GroupLassoModelSizeRegularizer',
                                  'GroupLassoActivationRegularizer'])
def test_an_embedding_output_is_pruned_as_in_the_graph_engine(name):
  # The same mechanism without attention: an Embedding's output is a hidden
  # size (its table's columns and conv's rows). emb 4 (d alive) -> conv 6
  # (c alive, 4 steps of 3 taps) -> average -> fc 5 -> logits 2.
  keras.backend.clear_session()
  x = keras.Input((6,), dtype='int32')
  y = L.Conv1D(6, 3, name='conv')(L.Embedding(20, 4, name='emb')(x))
  y = L.Dense(5, name='fc')(L.GlobalAveragePooling1D(name='pool')(y))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  engines = _engines(model, name)
  _zero(model.get_layer('emb').embeddings, (slice(None), 1))
  _zero(model.get_layer('conv').kernel, (slice(None), 1))
  _zero(model.get_layer('conv').kernel, (Ellipsis, 2))
  d, c = 3, 5
  cost = {'GroupLassoFlopsRegularizer': 2 * 4 * 3 * d * c + 2 * c * 5 + 20,
          'GroupLassoModelSizeRegularizer': 3 * d * c + c * 5 + 10,
          'GroupLassoActivationRegularizer': c + 5 + 2}[name]
  terms = []
  for engine in engines:
    assert engine.alive_counts() == {'emb': d, 'conv': c, 'fc': 5,
                                     'logits': 2}
    assert float(engine.cost()) == cost
    terms.append(float(engine.term()))
  assert terms == pytest.approx(terms[:1] * len(terms), rel=1e-6)


def test_a_grouping_other_than_rms_or_l2_fails():
  with pytest.raises(errors.InvalidArgumentError) as e:
    hidden_members.check_grouping('max', ['embed'])
  assert str(e.value) == (
      "hidden_size.GROUPING is 'max'; expected one of ['rms', 'l2'] (hidden "
      "size of layer(s) 'embed').")
  assert hidden_members.check_grouping('l2', ['embed']) == 'l2'


@pytest.mark.skipif(not _ON_TF, reason='hidden_size needs TensorFlow')
def test_l2_grouping_equals_the_graph_engine(monkeypatch):
  from morph_net.keras import hidden_size  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(hidden_size, 'GROUPING', 'l2')
  assert hidden_members.grouping() == 'l2'
  model = _model()
  _kill(model)
  # Per member of an alive hidden channel, over the entries rebuild keeps
  # (head 0's): embed 1, query, key and value rows 1 each, output column
  # and bias 1, fc row 1: the L2 norm sqrt(6) (over every entry: query,
  # key and value sqrt(1/2), output sqrt(2/3), sqrt(25/6)).
  hidden = np.sqrt(6)
  want = 34 * 2 * hidden + 48 * np.sqrt(11 / 19) + 8 * 3 * np.sqrt(1 / 2)
  for engine in _engines(model, 'GroupLassoFlopsRegularizer'):
    assert engine.alive_counts() == {'embed': 2, 'mha': 1, 'fc': 3,
                                     'logits': 2}
    assert float(engine.term()) == pytest.approx(want, rel=1e-6)
  monkeypatch.setattr(hidden_size, 'GROUPING', 'max')
  with pytest.raises(errors.InvalidArgumentError) as e:
    layer_regularizer.LayerRegularizer(model, 'GroupLassoFlopsRegularizer',
                                       threshold=_THRESHOLD)
  assert str(e.value) == (
      "hidden_size.GROUPING is 'max'; expected one of ['rms', 'l2'] (hidden "
      "size of layer(s) 'embed').")


@pytest.mark.skipif(not _ON_TF, reason='the graph engine needs TensorFlow')
def test_hidden_members_are_the_graph_engines_weights():
  from morph_net.keras import attention  # pylint: disable=g-import-not-at-top
  from morph_net.keras import hidden_size  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import channel_model  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = _model()
  _kill(model)
  channels = channel_model.analyze(model)
  (root, names), = hidden_members.hidden_roots(channels).items()
  assert names == ['mha'] and channels.table.size(root) == 4
  read = tf.convert_to_tensor
  graph = hidden_size.hidden_member_weights(channels, root, read)
  layer = hidden_members.member_columns(channels, root)
  assert [tuple(g.shape) for g in graph] == [(4, 4), (2, 4), (2, 4), (2, 4),
                                             (3, 4), (3, 4)]
  for g, l in zip(graph, layer):
    np.testing.assert_array_equal(g.numpy(), keras.ops.convert_to_numpy(l))
  mha = model.get_layer('mha')
  np.testing.assert_array_equal(
      attention.head_weights(mha, read).numpy(),
      keras.ops.convert_to_numpy(hidden_members.head_columns(mha)))
