"""A hidden channel counts only the weights rebuild keeps.

Rebuild removes the rows of dead FFN units from the second FFN Dense and
the rows of dead heads from the attention output projection (and their
query, key and value columns). A hidden channel whose only nonzero weights
sit there has no weights left after rebuild, so its group value counts
only the entries of alive heads and units: otherwise it would be called
alive, and a fresh regularizer on the rebuilt model would find it dead
(measured on a ViT, docs/MODERN_KERAS.md).

Each test runs on both engines with the same hand values: the graph
engine (`hidden_size.HiddenGroups`, TensorFlow only) and the layer-level
engine (`layer_regularizer.LayerRegularizer`, any Keras backend); both
read which entries rebuild keeps from `hidden_members.kept_member_weights`.

The pre-norm encoder: Embedding 8 -> RMSNorm -> MHA (2 heads, key_dim 4)
-> Add -> RMSNorm -> FFN 16 (relu) -> 8 -> Add -> RMSNorm -> pooling ->
logits 3 on 6 tokens; every norm scale at 1 (counted through its readers).
Head 1 and FFN units 8-15 are dead (every weight zero but those below);
hidden channel 2 is zero everywhere but the rows of the dead units in
ffn2 (0.005 each), hidden channel 5 zero everywhere but the rows of the
dead head in the output projection (0.0053 each).
"""

import keras
import numpy as np
import pytest

from morph_net.keras import hidden_members
from morph_net.keras import layer_regularizer
from morph_net.keras import layer_structure_cost
from morph_net.surgery import rebuild

L = keras.layers
_ON_TF = keras.backend.backend() == 'tensorflow'
TOKENS = np.random.default_rng(0).integers(0, 20, size=(16, 6))
THRESHOLD = 1e-3
HEAD = 1  # The dead head.
UNITS = slice(8, 16)  # The dead FFN units.
ALIVE_UNITS = slice(0, 8)


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  keras.utils.set_random_seed(1)
  yield


@pytest.fixture(params=['rms', 'l2'])
def grouping(request, monkeypatch):
  if _ON_TF:
    from morph_net.keras import hidden_size  # pylint: disable=g-import-not-at-top
    monkeypatch.setattr(hidden_size, 'GROUPING', request.param)
  else:  # Without TensorFlow `hidden_members.grouping()` reads the default.
    monkeypatch.setattr(hidden_members, 'DEFAULT_GROUPING', request.param)
  assert hidden_members.grouping() == request.param
  return request.param


@pytest.fixture(params=['graph', 'layer'])
def engine(request):
  if request.param == 'graph' and not _ON_TF:
    pytest.skip('the graph engine needs TensorFlow')
  return request.param


def _numpy(variable):
  return keras.ops.convert_to_numpy(variable)


def _encoder():
  x = keras.Input((6,), dtype='int32')
  h = L.Embedding(20, 8, name='embed')(x)
  a = L.RMSNormalization(name='n1')(h)
  h = L.Add(name='add1')([h, L.MultiHeadAttention(2, 4, name='mha')(a, a)])
  f = L.Dense(16, activation='relu', name='ffn1')(
      L.RMSNormalization(name='n2')(h))
  h = L.Add(name='add2')([h, L.Dense(8, name='ffn2')(f)])
  h = L.GlobalAveragePooling1D(name='pool')(
      L.RMSNormalization(name='n_out')(h))
  return keras.Model(x, L.Dense(3, name='logits')(h))


def _set(variable, index, value):
  array = _numpy(variable).copy()
  array[index] = value
  variable.assign(array)


def _model():
  """The encoder with head 1 and units 8-15 dead, hidden channels 2 and 5
  held only by their rows."""
  model = _encoder()
  every = slice(None)
  mha = model.get_layer('mha')
  ffn1, ffn2 = model.get_layer('ffn1'), model.get_layer('ffn2')
  # Head 1 dead: its query, key and value columns and biases, its output
  # rows.
  for dense in (mha._query_dense, mha._key_dense, mha._value_dense):
    _set(dense.kernel, (every, HEAD), 0.0)
    _set(dense.bias, HEAD, 0.0)
  _set(mha._output_dense.kernel, HEAD, 0.0)
  # Units 8-15 dead: their ffn1 columns and biases.
  _set(ffn1.kernel, (every, UNITS), 0.0)
  _set(ffn1.bias, UNITS, 0.0)
  # Hidden channels 2 and 5 zero everywhere.
  dead = [2, 5]
  _set(model.get_layer('embed').embeddings, (every, dead), 0.0)
  for dense in (mha._query_dense, mha._key_dense, mha._value_dense):
    _set(dense.kernel, dead, 0.0)
  _set(mha._output_dense.kernel, (Ellipsis, dead), 0.0)
  _set(mha._output_dense.bias, dead, 0.0)
  _set(ffn1.kernel, (dead, every), 0.0)
  _set(ffn2.kernel, (every, dead), 0.0)
  _set(ffn2.bias, dead, 0.0)
  _set(model.get_layer('logits').kernel, (dead, every), 0.0)
  # ... but the dead units' ffn2 rows (channel 2) and the dead head's
  # output rows (channel 5).
  _set(ffn2.kernel, (UNITS, 2), 0.005)
  _set(mha._output_dense.kernel, (HEAD, every, 5), 0.0053)
  for norm in ('n1', 'n2', 'n_out'):
    assert _numpy(model.get_layer(norm).scale).tolist() == [1.0] * 8
  return model


def _group_lasso(model, engine):
  """The GroupLasso FLOPs regularizer of `engine` ('graph' or 'layer')."""
  if engine == 'layer':
    return layer_regularizer.LayerRegularizer(
        model, 'GroupLassoFlopsRegularizer', threshold=THRESHOLD)
  from morph_net.keras import model_regularizer  # pylint: disable=g-import-not-at-top
  return model_regularizer.ModelRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=THRESHOLD)


def _structure_cost(regularizer, engine, structure):
  if engine == 'layer':
    return layer_structure_cost.LayerStructureCost(regularizer).cost(
        structure)
  from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top
  return structure_cost.StructureCost(regularizer)(structure)


def _kept_members(model, heads, units):
  """[entries, d] float64 weights of each member of the hidden group that
  rebuild keeps with the heads `heads` and FFN units `units`: the rows of
  a reader through a norm times the norm's scale."""
  value = lambda variable: _numpy(variable).astype(np.float64)
  scale = lambda name: value(model.get_layer(name).scale)[None]
  mha = model.get_layer('mha')
  d = int(mha._output_dense.kernel.shape[-1])
  projections = [
      value(d_.kernel)[:, heads].reshape(d, -1).T * scale('n1')
      for d_ in (mha._query_dense, mha._value_dense, mha._key_dense)]
  return [
      value(model.get_layer('embed').embeddings),
      *projections,
      np.concatenate([value(mha._output_dense.kernel)[heads].reshape(-1, d),
                      value(mha._output_dense.bias)[None]]),
      value(model.get_layer('ffn1').kernel)[:, units].T * scale('n2'),
      np.concatenate([value(model.get_layer('ffn2').kernel)[units],
                      value(model.get_layer('ffn2').bias)[None]]),
      value(model.get_layer('logits').kernel).T * scale('n_out'),
  ]


def _by_hand(members, grouping):
  if grouping == 'l2':
    return np.sqrt(sum(np.mean(np.square(m), axis=0) for m in members))
  return np.sqrt(np.mean(np.square(np.concatenate(members)), axis=0))


def test_all_weights_would_keep_both_channels_alive(grouping, engine):
  """Counted over every weight (what the group value was), channels 2 and
  5 are above the threshold: 'l2' sqrt(8 x 0.005^2 / 17) = 0.0034 (ffn2's
  columns, 16 rows and the bias) and sqrt(4 x 0.0053^2 / 9) = 0.0035 (the
  output projection's 8 rows and bias); 'rms' over the channel's 89
  weights sqrt(8 x 0.005^2 / 89) = 0.0015 and sqrt(4 x 0.0053^2 / 89) =
  0.0011. The head itself is dead: its 140 weights' root mean square is
  sqrt(4 x 0.0053^2 / 140) = 0.0009."""
  model = _model()
  every = _by_hand(_kept_members(model, slice(None), slice(None)), grouping)
  if grouping == 'l2':
    np.testing.assert_allclose(every[[2, 5]], [
        np.sqrt(8 * 0.005**2 / 17), np.sqrt(4 * 0.0053**2 / 9)], rtol=1e-6)
  else:
    np.testing.assert_allclose(every[[2, 5]], [
        np.sqrt(8 * 0.005**2 / 89), np.sqrt(4 * 0.0053**2 / 89)], rtol=1e-6)
  assert np.all(every > THRESHOLD)
  regularizer = _group_lasso(model, engine)
  mha = model.get_layer('mha')
  np.testing.assert_allclose(
      regularizer.regularization_vectors()['mha'],
      [np.sqrt(np.mean(np.square(np.concatenate([
          _numpy(mha._query_dense.kernel)[:, 0].ravel(),
          _numpy(mha._key_dense.kernel)[:, 0].ravel(),
          _numpy(mha._value_dense.kernel)[:, 0].ravel(),
          _numpy(mha._query_dense.bias)[0],
          _numpy(mha._key_dense.bias)[0],
          _numpy(mha._value_dense.bias)[0],
          _numpy(mha._output_dense.kernel)[0].ravel()])))),
       np.sqrt(4 * 0.0053**2 / 140)], rtol=1e-5)


def test_channels_held_by_dead_heads_and_units_are_dead(grouping, engine):
  """The group value counts the entries of the alive head (0) and units
  (0-7) only: channels 2 and 5 are 0, the others the root mean squares of
  their kept entries (57 per channel: 20 embedding, 3 x 4 projection rows,
  4 + 1 output projection, 8 ffn1 rows, 8 + 1 ffn2, 3 logits rows)."""
  model = _model()
  regularizer = _group_lasso(model, engine)
  members = _kept_members(model, [0], ALIVE_UNITS)
  assert sum(m.shape[0] for m in members) == 57
  values = regularizer.regularization_vectors()['embed']
  np.testing.assert_allclose(values, _by_hand(members, grouping),
                             rtol=1e-5)
  assert values[[2, 5]].tolist() == [0.0, 0.0]
  assert regularizer.alive_counts() == {'embed': 6, 'mha': 1, 'ffn1': 8,
                                        'ffn2': 6, 'logits': 3}
  assert regularizer.alive_vectors()['embed'].tolist() == [
      True, True, False, True, True, False, True, True]


def test_rebuild_gives_the_predicted_cost(grouping, engine):
  """d = 6, T = 6, K = V = 4, one head: 3 x 2*6*6*4 (query, key, value) +
  2 x 2*6*6*4 (QK^T, x V) + 2*6*4*6 (output projection) = 1,728; ffn1
  2*6*6*8 and ffn2 2*6*8*6, 576 each; logits 2*6*3 = 36."""
  model = _model()
  regularizer = _group_lasso(model, engine)
  flops = 864 + 576 + 288 + 576 + 576 + 36
  assert float(regularizer.cost()) == flops == 2916
  assert _structure_cost(regularizer, engine,
                         regularizer.alive_counts()) == flops
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('embed').embeddings.shape == (20, 6)
  assert rebuilt.get_layer('mha').num_heads == 1
  assert rebuilt.get_layer('ffn1').kernel.shape == (6, 8)
  assert rebuilt.get_layer('ffn2').kernel.shape == (8, 6)
  assert rebuilt.get_layer('logits').kernel.shape == (6, 3)
  # The removed entries only met zero activations: the same outputs.
  np.testing.assert_allclose(rebuilt.predict(TOKENS, verbose=0),
                             model.predict(TOKENS, verbose=0), atol=1e-5)
  fresh = _group_lasso(rebuilt, engine)
  assert float(fresh.cost()) == flops
  assert fresh.alive_counts() == regularizer.alive_counts()
  # The fresh values are those of the kept entries, the rows through a
  # norm times its scale, which rebuild multiplied by sqrt(8 / 6)
  # (`ChannelNormRule`): only larger than predicted, so no alive channel
  # dies.
  for norm in ('n1', 'n2', 'n_out'):
    np.testing.assert_allclose(_numpy(rebuilt.get_layer(norm).scale),
                               [np.sqrt(8 / 6)] * 6, rtol=1e-6)
  fresh_values = fresh.regularization_vectors()['embed']
  np.testing.assert_allclose(
      fresh_values,
      _by_hand(_kept_members(rebuilt, [0], slice(None)), grouping),
      rtol=1e-5)
  kept = [0, 1, 3, 4, 6, 7]
  assert np.all(fresh_values >
                regularizer.regularization_vectors()['embed'][kept])
