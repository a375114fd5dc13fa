"""Pruning the heads of MultiHeadAttention layers (issue 22, item 1).

A head made dead has its query, key and value kernel columns and biases and
its rows of the output projection zeroed. Costs are counted by hand: per
alive head of a MultiHeadAttention with key_dim K, value_dim V, query steps
Tq and channels dq, key/value steps Tk and channels dk, dv, output width
out:

  FLOPs   = 2 Tq dq K + 2 Tk dk K + 2 Tk dv V   (query, key, value)
          + 2 Tq Tk K + 2 Tq Tk V               (QK^T, attention x V)
          + 2 Tq V out                          (output projection)
  weights = dq K + dk K + dv V + V out

and 2 x in x out per position (FLOPs) or in x out (weights) for a Dense.
"""

import logging

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import attention
from morph_net.keras import expansion
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.surgery import builtin_rules
from morph_net.surgery import rebuild

L = keras.layers
TOKENS = np.random.default_rng(0).integers(0, 20, size=(3, 6))


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  keras.utils.set_random_seed(1)
  yield


def _kill_heads(layer, dead):
  """Zeroes every weight of heads `dead` of a MultiHeadAttention layer."""
  for variable, axis in builtin_rules.attention_head_axes(layer):
    values = np.moveaxis(variable.numpy(), axis, 0)
    values[dead] = 0.0
    variable.assign(np.moveaxis(values, 0, axis))


def _encoder(heads_dead=(1, 3)):
  """Embedding 8 -> MHA (4 heads, key_dim 3, value_dim 5) -> Add+LN ->
  FFN 16 -> 8 -> Add+LN -> pooling -> logits 3, on 6 tokens."""
  x = keras.Input((6,), dtype='int32')
  h = L.Embedding(20, 8, name='embed')(x)
  a = L.MultiHeadAttention(4, 3, value_dim=5, name='mha')(h, h)
  h = L.LayerNormalization(name='ln1')(L.Add(name='add1')([h, a]))
  f = L.Dense(16, activation='relu', name='ffn1')(h)
  f = L.Dense(8, name='ffn2')(f)
  h = L.LayerNormalization(name='ln2')(L.Add(name='add2')([h, f]))
  h = L.GlobalAveragePooling1D(name='pool')(h)
  model = keras.Model(x, L.Dense(3, name='logits')(h))
  _kill_heads(model.get_layer('mha'), list(heads_dead))
  return model


def _group_lasso(model, regularizer_class=None, **kwargs):
  return model_regularizer.ModelRegularizer(
      model, regularizer_class or flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=1e-3, **kwargs)


# One head of the encoder: Tq = Tk = 6, dq = dk = dv = out = 8, K 3, V 5:
# projections 2*6*8*3 + 2*6*8*3 + 2*6*8*5, QK^T 2*6*6*3, attention x V
# 2*6*6*5, output 2*6*5*8.
HEAD_FLOPS = 288 + 288 + 480 + 216 + 360 + 480
# ffn1 2*6*8*16, ffn2 2*6*16*8, logits 2*8*3.
REST_FLOPS = 1536 + 1536 + 48
# One head: 8*3 + 8*3 + 8*5 + 5*8 weights; ffn1 8*16, ffn2 16*8, logits 8*3.
HEAD_WEIGHTS = 24 + 24 + 40 + 40
REST_WEIGHTS = 128 + 128 + 24


def test_alive_heads_and_flops_by_hand():
  regularizer = _group_lasso(_encoder())
  # The hidden size (embed, ffn2) is all alive.
  assert regularizer.alive_counts() == {'mha': 2, 'embed': 8, 'ffn1': 16,
                                        'ffn2': 8, 'logits': 3}
  assert regularizer.alive_vectors()['mha'].tolist() == [True, False, True,
                                                         False]
  assert HEAD_FLOPS == 2112
  assert float(regularizer.cost()) == 2 * HEAD_FLOPS + REST_FLOPS == 7344


def test_model_size_by_hand():
  regularizer = _group_lasso(
      _encoder(), model_size_regularizer.GroupLassoModelSizeRegularizer)
  assert regularizer.alive_counts()['mha'] == 2
  assert float(regularizer.cost()) == 2 * HEAD_WEIGHTS + REST_WEIGHTS == 536


def test_all_heads_alive_keep_todays_cost():
  # Under Gamma the heads are kept and the graph analysis costs the
  # layer's ops, as before heads were pruned: the same numbers.
  def model():
    x = keras.Input((6,), dtype='int32')
    h = L.Embedding(20, 8, name='embed')(x)
    a = L.MultiHeadAttention(4, 3, value_dim=5, name='mha')(h, h)
    h = L.Add(name='add1')([h, a])
    f = L.Dense(16, use_bias=False, name='ffn1')(h)
    f = L.BatchNormalization(name='bn')(f)
    h = L.GlobalAveragePooling1D(name='pool')(f)
    return keras.Model(x, L.Dense(3, name='logits')(h))
  group_lasso = _group_lasso(model())
  assert group_lasso.alive_counts()['mha'] == 4
  gamma = model_regularizer.ModelRegularizer(
      model(), flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  assert 'mha' not in gamma.alive_counts()
  assert float(group_lasso.cost()) == float(gamma.cost())
  for heads in (4, 1):
    group_lasso = _group_lasso(model())
    assert structure_cost.StructureCost(group_lasso)(
        {'mha': heads}) == float(group_lasso.cost()) - (4 - heads) * (
            HEAD_FLOPS)


def test_head_regularization_is_the_group_lasso_of_its_weights():
  model = _encoder()
  values = _group_lasso(model).regularization_vectors()['mha']
  layer = model.get_layer('mha')
  np.testing.assert_allclose(
      values, builtin_rules.AttentionRule().channel_scores(layer), rtol=1e-5)
  assert values[[1, 3]].tolist() == [0.0, 0.0]
  # Head 2: its query, key, value kernels (8 x 3, 8 x 3, 8 x 5) and biases
  # (3, 3, 5) and its output rows (5 x 8): 139 weights, root mean square.
  parts = []
  for dense in (layer._query_dense, layer._key_dense, layer._value_dense):
    parts += [dense.kernel.numpy()[:, 2].ravel(), dense.bias.numpy()[2]]
  parts.append(layer._output_dense.kernel.numpy()[2].ravel())
  head = np.concatenate(parts)
  assert head.size == 139
  np.testing.assert_allclose(values[2], np.sqrt(np.mean(head ** 2)),
                             rtol=1e-5)


def test_term_is_the_bilinear_form_of_the_head_cost():
  # Every alive count a x b of the cost becomes a x sum(r_b) + b x
  # sum(r_a); the hidden size (embed, ffn2, the attention's inputs and
  # output) is one group with regularization sum R. Per hidden channel one
  # head costs 2*6*3 (query) + 2*6*3 (key) + 2*6*5 (value) + 2*6*5
  # (output) = 192 FLOPs.
  regularizer = _group_lasso(_encoder())
  values = regularizer.regularization_vectors()
  hidden, ffn1, heads = (float(values[n].sum())
                         for n in ('embed', 'ffn1', 'mha'))
  assert float(values['ffn2'].sum()) == hidden
  # ffn1 2*6 x (8 x r_ffn1 + 16 x R), ffn2 2*6 x (16 x R + 8 x r_ffn1),
  # logits (kept, r 0) 2 x 3 x R; the heads: sum(r_heads) x one head's
  # FLOPs + 2 alive heads x 192 x R.
  network = 12 * (8 * ffn1 + 16 * hidden) * 2 + 2 * 3 * hidden
  attention_part = heads * HEAD_FLOPS + 2 * 192 * hidden
  assert float(regularizer.term()) == pytest.approx(network + attention_part,
                                                    rel=1e-5)


def test_rebuild_keeps_the_alive_heads_and_the_outputs():
  model = _encoder()
  regularizer = _group_lasso(model)
  cost = structure_cost.StructureCost(regularizer)
  assert cost({}) == 4 * HEAD_FLOPS + REST_FLOPS
  assert cost(regularizer.alive_counts()) == 7344
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  mha = rebuilt.get_layer('mha')
  assert (mha.num_heads, mha.key_dim, mha.value_dim) == (2, 3, 5)
  assert [tuple(w.shape) for w in mha.weights] == [
      (8, 2, 3), (2, 3), (8, 2, 3), (2, 3), (8, 2, 5), (2, 5), (2, 5, 8),
      (8,)]
  old = model.get_layer('mha')
  np.testing.assert_array_equal(mha._query_dense.kernel.numpy(),
                                old._query_dense.kernel.numpy()[:, [0, 2]])
  np.testing.assert_array_equal(mha._output_dense.kernel.numpy(),
                                old._output_dense.kernel.numpy()[[0, 2]])
  np.testing.assert_allclose(rebuilt.predict(TOKENS, verbose=0),
                             model.predict(TOKENS, verbose=0), atol=1e-5)
  fresh = _group_lasso(rebuilt)
  assert float(fresh.cost()) == 7344
  assert fresh.alive_counts() == regularizer.alive_counts()


def test_cross_attention_by_hand():
  query, memory = keras.Input((5, 8)), keras.Input((7, 6))
  q = L.Dense(8, name='q_in')(query)
  m = L.Dense(6, name='m_in')(memory)
  a = L.MultiHeadAttention(3, 4, value_dim=2, name='cross')(q, m)
  y = L.Dense(10, activation='relu', name='ffn')(a)
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model([query, memory], L.Dense(2, name='logits')(y))
  _kill_heads(model.get_layer('cross'), [1])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'q_in': 8, 'm_in': 6, 'cross': 2,
                                        'ffn': 10, 'logits': 2}
  # One head: Tq 5, Tk 7, dq 8, dk = dv 6, K 4, V 2, out 8: 2*5*8*4 +
  # 2*7*6*4 + 2*7*6*2 + 2*5*7*4 + 2*5*7*2 + 2*5*2*8 = 1404.
  head = 320 + 336 + 168 + 280 + 140 + 160
  # q_in 2*5*8*8, m_in 2*7*6*6, ffn 2*5*8*10, logits 2*10*2.
  flops = 2 * head + 640 + 504 + 800 + 40
  assert float(regularizer.cost()) == flops == 4792
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  data = [np.random.default_rng(1).normal(size=(2, 5, 8)),
          np.random.default_rng(2).normal(size=(2, 7, 6))]
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('cross').num_heads == 2
  np.testing.assert_allclose(rebuilt.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == flops


def _two_blocks():
  """Embedding 8 -> 2 x (MHA (2 heads, key_dim 4) -> Add -> Dense 16 ->
  batch norm -> ReLU -> Dense 8 -> Add) -> pooling -> logits."""
  x = keras.Input((6,), dtype='int32')
  h = L.Embedding(20, 8, name='embed')(x)
  for i in range(2):
    a = L.MultiHeadAttention(2, 4, name='mha%d' % i)(h, h)
    h = L.Add(name='add%d' % i)([h, a])
    f = L.Dense(16, use_bias=False, name='ffn%d' % i)(h)
    f = L.ReLU()(L.BatchNormalization(name='bn%d' % i)(f))
    h = L.Add(name='res%d' % i)([h, L.Dense(8, name='out%d' % i)(f)])
  h = L.GlobalAveragePooling1D()(h)
  return keras.Model(x, L.Dense(3, name='logits')(h))


def _head_warnings(caplog):
  return [r.getMessage() for r in caplog.records
          if 'regularizes no attention heads' in r.getMessage()]


def test_two_blocks_prune_each_layer_and_gamma_names_both(caplog):
  model = _two_blocks()
  _kill_heads(model.get_layer('mha1'), [0])
  with caplog.at_level(logging.WARNING):
    regularizer = _group_lasso(model)
  assert not _head_warnings(caplog)
  counts = regularizer.alive_counts()
  assert (counts['mha0'], counts['mha1']) == (2, 1)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    gamma = model_regularizer.ModelRegularizer(
        model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  assert _head_warnings(caplog) == [
      "Attention layer(s) 'mha0' (MultiHeadAttention), 'mha1' "
      '(MultiHeadAttention): GammaFlopsRegularizer regularizes no attention '
      'heads (a head has no batch-norm scale or gate of its own; only '
      'GroupLasso regularizers of FLOPs or model size prune heads), so '
      'they keep every head.']
  assert 'mha0' not in gamma.alive_counts()
  # Both blocks' heads are costed whole under Gamma (the dead one
  # included), every other layer alike. One head: 3 x 2*6*8*4 + 2 x
  # 2*6*6*4 + 2*6*4*8 = 2112.
  assert float(gamma.cost()) - float(regularizer.cost()) == 2112


def test_logistic_sigmoid_keeps_the_heads(caplog):
  x = keras.Input((6, 8))
  a = L.MultiHeadAttention(2, 4, name='mha')(x, x)
  y = L.GlobalAveragePooling1D()(L.Dense(4, name='ffn')(a))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  # No gates in this model: no source; the heads were planned before.
  with caplog.at_level(logging.WARNING), pytest.raises(
      errors.NoSourceOpsError):
    model_regularizer.ModelRegularizer(
        model, flop_regularizer.LogisticSigmoidFlopsRegularizer,
        alive_threshold=0.1)
  (message,) = _head_warnings(caplog)
  assert message.startswith(
      "Attention layer(s) 'mha' (MultiHeadAttention): "
      'LogisticSigmoidFlopsRegularizer regularizes no attention heads')


def test_attention_reaching_a_model_output():
  x = keras.Input((5, 6))
  y = L.Dense(8, name='proj')(x)
  model = keras.Model(x, L.MultiHeadAttention(4, 2, name='mha')(y, y))
  _kill_heads(model.get_layer('mha'), [0, 1, 3])
  regularizer = _group_lasso(model)
  # The output keeps its width; the heads still go.
  assert regularizer.alive_counts() == {'proj': 8, 'mha': 1}
  # One head: Tq = Tk = 5, d 8, K = V = 2: 3 x 2*5*8*2 + 2 x 2*5*5*2 +
  # 2*5*2*8 = 840; proj 2*5*6*8.
  assert float(regularizer.cost()) == 840 + 480
  data = np.random.default_rng(3).normal(size=(2, 5, 6))
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert rebuilt.get_layer('mha').num_heads == 1
  np.testing.assert_allclose(rebuilt.predict(data, verbose=0),
                             model.predict(data, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == 840 + 480


def test_attention_on_the_only_path_keeps_one_head():
  x = keras.Input((5, 6))
  a = L.MultiHeadAttention(2, 2, name='mha')(x, x)
  model = keras.Model(x, L.Dense(2, name='logits')(a))
  _kill_heads(model.get_layer('mha'), [0, 1])
  regularizer = _group_lasso(model)
  assert regularizer.alive_counts() == {'mha': 1, 'logits': 2}
  assert regularizer.connecting_layers == ['mha']
  # One head: d 6, K = V = 2, out 6: 3 x 2*5*6*2 + 2 x 2*5*5*2 + 2*5*2*6
  # = 680; logits 2*5*6*2.
  assert float(regularizer.cost()) == 680 + 120


def test_expand_to_cost_widens_the_heads():
  regularizer = _group_lasso(_encoder())
  cost = structure_cost.StructureCost(regularizer)
  expanded, _, flops = expansion.expand_to_cost(
      cost, regularizer.alive_counts(), cost({}))
  assert flops == cost(expanded)
  assert expanded['mha'] >= 2
  # Within the search's tolerance (the hidden size grows with the rest).
  assert abs(flops - cost({})) <= 0.01 * cost({})


def test_other_attention_configurations_keep_their_heads(caplog):
  x = keras.Input((6, 8))
  a = L.MultiHeadAttention(2, 4, output_shape=(5,), name='mha')(x, x)
  y = L.GlobalAveragePooling1D()(L.Dense(4, name='ffn')(a))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  with caplog.at_level(logging.WARNING):
    regularizer = _group_lasso(model)
  assert ("Attention layer(s) 'mha' (MultiHeadAttention) keep every head: "
          'rebuild removes the heads of MultiHeadAttention layers without a '
          'gate, with the default output shape, attending over the steps of '
          'rank-3 inputs.') in [r.getMessage() for r in caplog.records]
  assert 'mha' not in regularizer.alive_counts()
  assert builtin_rules.attention_heads(model.get_layer('mha')) is None
  # Costed by the graph analysis as before: one head 3 x 2*6*8*4 + 2 x
  # 2*6*6*4 + 2*6*4*5 = 1968; ffn 2*6*5*4; logits 2*4*2.
  assert float(regularizer.cost()) == 2 * 1968 + 240 + 16


def test_head_weights_of_other_layers_is_none():
  assert attention.head_weights(L.Dense(2), lambda v: None) is None


def test_transfer_refuses_a_weight_that_does_not_follow_the_heads():
  model = _encoder()
  layer = model.get_layer('mha')
  weights = [w.numpy() for w in layer.weights]
  shapes = [(8, 2, 3), (2, 3), (8, 2, 3), (2, 3), (8, 2, 5), (2, 5),
            (2, 5, 8), (7,)]
  with pytest.raises(errors.WeightTransferError, match=(
      r"Cannot transfer weight 'mha/attention_output/bias' of attention "
      r"layer 'mha' \(MultiHeadAttention\): shape \(8,\), rebuilt \(7,\); "
      r'only the number of heads, the input channels and the output '
      r'channels may change.')):
    builtin_rules.AttentionRule().transfer_weights(layer, weights, shapes,
                                                   None)


def test_every_head_dead_in_a_residual_branch_vanishes():
  model = _encoder(heads_dead=(0, 1, 2, 3))
  regularizer = _group_lasso(model)
  # The branch can go (the skip carries on): no head is kept.
  assert regularizer.alive_counts()['mha'] == 0
  # The hidden size keeps a channel; the heads may all go.
  assert regularizer.connecting_layers == ['embed', 'ffn2']
  assert float(regularizer.cost()) == REST_FLOPS
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  assert 'mha' not in [layer.name for layer in rebuilt.layers]
  # The output bias is 0 (its initializer), so the branch added 0.
  np.testing.assert_allclose(rebuilt.predict(TOKENS, verbose=0),
                             model.predict(TOKENS, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == REST_FLOPS


def test_shared_layer_has_one_head_group_and_its_weights_once():
  first, second = keras.Input((5, 8)), keras.Input((5, 8))
  mha = L.MultiHeadAttention(3, 2, name='mha')
  y = L.Concatenate()([mha(first, first), mha(second, second)])
  y = L.GlobalAveragePooling1D()(y)
  model = keras.Model([first, second], L.Dense(2, name='logits')(y))
  _kill_heads(model.get_layer('mha'), [2])
  flops = _group_lasso(model)
  assert flops.alive_counts() == {'mha': 2, 'logits': 2}
  # One head: 3 x 2*5*8*2 + 2 x 2*5*5*2 + 2*5*2*8 = 840, per call;
  # logits 2*16*2.
  assert float(flops.cost()) == 2 * 2 * 840 + 64
  assert structure_cost.StructureCost(flops)(flops.alive_counts()) == (
      2 * 2 * 840 + 64)
  size = _group_lasso(model,
                      model_size_regularizer.GroupLassoModelSizeRegularizer)
  # One head: 8*2 + 8*2 + 8*2 + 2*8 = 64 weights, once; logits 16*2.
  assert float(size.cost()) == 2 * 64 + 32
  assert structure_cost.StructureCost(size)(size.alive_counts()) == (
      2 * 64 + 32)


def test_growing_heads_cannot_take_weights():
  model = _encoder()
  with pytest.raises(errors.WeightTransferError, match=(
      r"Cannot transfer the weights of attention layer 'mha' "
      r'\(MultiHeadAttention\): its heads grow from 4 to 6, and the new '
      r'heads have no weights to copy. Rebuild it with '
      r'transfer_weights=False, or with at most 4 heads.')):
    rebuild.rebuild(model, {'mha': 6}, transfer_weights=True,
                    on_growth='initialize')
  rebuilt = rebuild.rebuild(model, {'mha': 6})
  assert rebuilt.get_layer('mha').num_heads == 6
  assert structure_cost.StructureCost(_group_lasso(model))({'mha': 6}) == (
      6 * HEAD_FLOPS + REST_FLOPS)


def test_a_latency_regularizer_keeps_the_heads(caplog):
  from morph_net.network_regularizers import latency_regularizer  # pylint: disable=g-import-not-at-top
  x = keras.Input((6, 8))
  a = L.MultiHeadAttention(2, 4, name='mha')(x, x)
  y = L.GlobalAveragePooling1D()(L.Dense(4, name='ffn')(a))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  with caplog.at_level(logging.WARNING):
    regularizer = model_regularizer.ModelRegularizer(
        model, latency_regularizer.GroupLassoLatencyRegularizer,
        threshold=1e-3, hardware='V100')
  assert _head_warnings(caplog) == [
      "Attention layer(s) 'mha' (MultiHeadAttention): "
      'GroupLassoLatencyRegularizer regularizes no attention heads (only '
      'the FLOPs and model size of attention heads are costed from their '
      'number), so they keep every head.']
  assert 'mha' not in regularizer.alive_counts()


def test_rebuild_keeps_the_regularizers_own_heads():
  # Heads 0 and 2 dead (not the last ones): heads 1 and 3 are kept.
  model = _encoder(heads_dead=(0, 2))
  regularizer = _group_lasso(model)
  assert regularizer.alive_vectors()['mha'].tolist() == [False, True, False,
                                                         True]
  rebuilt = rebuild.rebuild(model, regularizer, transfer_weights=True)
  mha, old = rebuilt.get_layer('mha'), model.get_layer('mha')
  assert mha.num_heads == 2
  for new_dense, old_dense in ((mha._query_dense, old._query_dense),
                               (mha._value_dense, old._value_dense)):
    np.testing.assert_array_equal(new_dense.kernel.numpy(),
                                  old_dense.kernel.numpy()[:, [1, 3]])
  np.testing.assert_array_equal(mha._output_dense.kernel.numpy(),
                                old._output_dense.kernel.numpy()[[1, 3]])
  np.testing.assert_allclose(rebuilt.predict(TOKENS, verbose=0),
                             model.predict(TOKENS, verbose=0), atol=1e-5)
  assert float(_group_lasso(rebuilt).cost()) == float(regularizer.cost())


def test_alive_masks_choose_the_heads():
  # Every head alive; the masks keep heads 0 and 2, whatever their norms.
  model = _encoder(heads_dead=())
  layer = model.get_layer('mha')
  scores = builtin_rules.AttentionRule().channel_scores(layer)
  assert sorted(np.argsort(-scores)[:2].tolist()) != [0, 2]
  rebuilt = rebuild.rebuild(model, {'mha': 2}, transfer_weights=True,
                            alive_masks={'mha': [True, False, True, False]})
  mha = rebuilt.get_layer('mha')
  np.testing.assert_array_equal(mha._key_dense.kernel.numpy(),
                                layer._key_dense.kernel.numpy()[:, [0, 2]])
  np.testing.assert_array_equal(mha._key_dense.bias.numpy(),
                                layer._key_dense.bias.numpy()[[0, 2]])
  np.testing.assert_array_equal(mha._output_dense.kernel.numpy(),
                                layer._output_dense.kernel.numpy()[[0, 2]])
