"""Differential test: the layer-level regularizer equals the graph engine.

On TensorFlow the graph engine (`morph_net.keras.ModelRegularizer`, which
traces the model) is the reference. For every model of
`morph_net.testing.keras_corpus` and seeded dead-channel patterns, the
layer-level engine (`layer_regularizer.LayerRegularizer`, which reads the
layers and runs on every Keras backend) must report the same cost, term
and alive counts, for FLOPs and model size, and cost the same layers: for
the Gamma family (dead patterns `dead_channels.zero_gammas`), the
GroupLasso family (`dead_channels.zero_filters`) and the LogisticSigmoid
family (the corpus model with a gate after every batch norm, `_gated`;
closed gates, `_close_gates`). A model the layer-level
engine refuses is listed in `REFUSED` (`REFUSED_GROUP_LASSO`) with the
error it gets, a model both refuse for want of sources in `NO_SOURCES`;
nothing is skipped silently."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import layer_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import activation_regularizer
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.testing import dead_channels
from morph_net.testing import keras_corpus

_SEEDS = (1, 3, 5)
_THRESHOLD = 1e-6
_CLASSES = (flop_regularizer.GammaFlopsRegularizer,
            model_size_regularizer.GammaModelSizeRegularizer)

# Models the layer-level engine refuses (the graph engine costs them): the
# layer its error names (a layer that multiplies channels whose rule has no
# cost hook yet). None: the custom SqueezeExcite layer's registered rule
# costs it (`custom_layers.SqueezeExciteRule.costed_ops`).
REFUSED = {}

# Models without a batch norm: both engines raise NoSourceOpsError.
NO_SOURCES = {'activations', 'attention_block', 'dense_on_tokens',
              'gru_sequences', 'layer_norm_conv', 'lstm_sequences',
              'permute_and_dense', 'simple_rnn'}

# Models whose group feeding a depthwise conv with a depth multiplier above 1
# the graph engine cuts into one op group per channel (see
# test_keep_connected_depthwise.py): that group's layer.
DEPTHWISE_MULTIPLIER_INPUTS = {'separable_2d': 'stem', 'depthwise_2d': 'expand'}


def _graph_flop_layers(traced, regularizer):
  """Layers whose traced ops the graph engine costs with FLOPs."""
  cost = structure_cost.StructureCost(traced)
  names = {name for op, name, _ in cost.costed_ops()
           if cost_forms.is_flop_op(op)}
  # Recurrent and attention layers are costed from their configs.
  names |= {call.layer.name for call in regularizer._recurrent.calls}  # pylint: disable=protected-access
  names |= {call.name for call in regularizer._attention.calls}  # pylint: disable=protected-access
  return names


def _layer_flop_layers(regularizer):
  return {call.layer_name for call in regularizer._calls  # pylint: disable=protected-access
          if call.op.flops > 0}


def _gated(model):
  """A copy of `model` with a LogisticSigmoidGating after every batch norm
  (each batch norm becomes a Sequential of a copy of it and its gate
  '<batch norm>_gate'); other layers are copied as they are."""
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top

  def clone(layer):
    copy = layer.__class__.from_config(layer.get_config())
    if not isinstance(layer, keras.layers.BatchNormalization):
      return copy
    return keras.Sequential(
        [copy, activation_gating.LogisticSigmoidGating(
            name=layer.name + '_gate')], name=layer.name + '_gated')

  return keras.models.clone_model(model, clone_function=clone)


def _close_gates(model, seed, max_fraction=0.6, layer_probability=0.8):
  """Closes random channels of the gates (log-odds -2.5), never every
  channel of a gate; seeded as `dead_channels.zero_gammas`."""
  rng = np.random.default_rng(seed)
  for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
    if not layer_regularizer.is_gate(layer):
      continue
    if rng.random() >= layer_probability:
      continue
    size = int(layer.log_odds.shape[0])
    count = int(rng.integers(0, max(0, min(size - 1, int(np.ceil(
        size * max_fraction)))) + 1))
    log_odds = keras.ops.convert_to_numpy(layer.log_odds).copy()
    log_odds[rng.choice(size, size=count, replace=False)] = -2.5
    layer.log_odds.assign(log_odds)


# Per source family: the regularizer classes compared, their threshold
# argument, the seeded dead pattern they read and what the corpus model
# becomes first.
_FAMILIES = {
    'Gamma': (_CLASSES, 'gamma_threshold', dead_channels.zero_gammas,
              lambda model: model),
    'GroupLasso': ((flop_regularizer.GroupLassoFlopsRegularizer,
                    model_size_regularizer.GroupLassoModelSizeRegularizer),
                   'threshold', dead_channels.zero_filters,
                   lambda model: model),
    'LogisticSigmoid': (
        (flop_regularizer.LogisticSigmoidFlopsRegularizer,
         model_size_regularizer.LogisticSigmoidModelSizeRegularizer),
        'alive_threshold', _close_gates, _gated),
    'Activation': (
        (activation_regularizer.GammaActivationRegularizer,),
        'gamma_threshold', dead_channels.zero_gammas, lambda model: model),
    'GroupLassoActivation': (
        (activation_regularizer.GroupLassoActivationRegularizer,),
        'threshold', dead_channels.zero_filters, lambda model: model),
}


def corpus_differences(name, min_channels=1, family='Gamma'):
  """The differences between the engines on corpus model `name`.

  Args:
    name: a corpus model.
    min_channels: both engines' `min_channels`.
    family: a key of `_FAMILIES`.

  Returns:
    ('refused', message), ('no sources', None) or ('compared', [problems]).
  """
  classes, threshold_name, kill, transform = _FAMILIES[family]
  kwargs = {threshold_name: _THRESHOLD}
  keras.backend.clear_session()
  model = transform(keras_corpus.get(name).build())
  initial = model.get_weights()
  traced = tracing.TracedModel(model)
  pairs = []
  for cls in classes:
    try:
      graph = morph_keras.ModelRegularizer(traced, cls,
                                           min_channels=min_channels,
                                           **kwargs)
    except errors.NoSourceOpsError:
      with pytest.raises(errors.NoSourceOpsError):
        layer_regularizer.LayerRegularizer(model, cls, **kwargs)
      return 'no sources', None
    try:
      layer = layer_regularizer.LayerRegularizer(
          model, cls, min_channels=min_channels, **kwargs)
    except errors.UnsupportedModelError as e:
      return 'refused', str(e)
    pairs.append((cls.__name__, graph, layer))
  problems = []
  graph_layers = _graph_flop_layers(traced, pairs[0][1])
  layer_layers = _layer_flop_layers(pairs[0][2])
  if graph_layers != layer_layers:
    problems.append('FLOP layers differ: graph only %s, layer-level only %s'
                    % (sorted(graph_layers - layer_layers),
                       sorted(layer_layers - graph_layers)))
  for seed in (None,) + _SEEDS:
    model.set_weights(initial)
    if seed is not None:
      kill(model, seed=seed)
    for cls_name, graph, layer in pairs:
      got = (float(layer.cost()), float(layer.term()), layer.alive_counts())
      want = (float(graph.cost()), float(graph.term()), graph.alive_counts())
      if (got[0] != want[0] or not np.isclose(got[1], want[1], rtol=1e-6) or
          got[2] != want[2]):
        problems.append('seed %s, %s: layer-level (cost, term, alive) %s, '
                        'graph engine %s' % (seed, cls_name, got, want))
  return 'compared', problems


# GroupLasso family: the models the layer-level engine refuses, with the
# layer its error names and the start of the error after it.
_NO_COST_HOOK = 'multiplies channels'
# (None today: attention_block's heads and hidden size are pruned by both,
# see test_layer_attention.py.)
REFUSED_GROUP_LASSO = {}


def _check_model(name, family, refused, no_sources):
  """Asserts the engines agree on corpus model `name` (see the module
  docstring), or fail as `refused` ({model: (layer, type, error start)})
  and `no_sources` (models both refuse) say."""
  outcome, detail = corpus_differences(name, family=family)
  if name in refused:
    assert outcome == 'refused', (outcome, detail)
    assert detail.startswith('Layer %r (%s)' % refused[name][:2]), detail
    assert refused[name][2] in detail, detail
  elif name in no_sources:
    assert outcome == 'no sources', (outcome, detail)
  else:
    assert outcome == 'compared', detail
    assert not detail, '\n'.join(detail)


@pytest.mark.parametrize('name', keras_corpus.names())
def test_layer_level_equals_graph_engine(name):
  _check_model(name, 'Gamma',
               {k: v + (_NO_COST_HOOK,) for k, v in REFUSED.items()},
               NO_SOURCES)


@pytest.mark.parametrize('name', keras_corpus.names())
def test_group_lasso_layer_level_equals_graph_engine(name):
  _check_model(name, 'GroupLasso', REFUSED_GROUP_LASSO, set())


def test_every_kind_that_multiplies_channels_has_a_cost_hook_or_a_gap(
    monkeypatch):
  from morph_net.keras import layer_kinds  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import builtin_rules  # pylint: disable=g-import-not-at-top
  assert layer_kinds.check_cost_hooks() == []
  dense = layer_kinds.layer_kind(keras.layers.Dense)
  assert layer_kinds.check_cost_hooks(
      [dense._replace(rule=builtin_rules.OpaqueRule)]) == [
          "Kind 'dense' multiplies channels (MatMul) but its rule OpaqueRule "
          'has no cost hook: give it a costed_ops method '
          '(morph_net.surgery.layer_cost) or say why not in '
          'layer_kinds.LAYER_LEVEL_GAPS.']
  attention = layer_kinds.layer_kind(keras.layers.MultiHeadAttention)
  monkeypatch.setitem(layer_kinds.LAYER_LEVEL_GAPS, 'attention', 'a gap')
  assert layer_kinds.check_cost_hooks([attention]) == [
      "Kind 'attention' is in layer_kinds.LAYER_LEVEL_GAPS but its rule "
      'AttentionRule costs it (or it multiplies nothing): remove the entry.']


@pytest.mark.parametrize('name, layer',
                         sorted(DEPTHWISE_MULTIPLIER_INPUTS.items()))
def test_both_engines_keep_one_channel_feeding_a_depthwise_multiplier(
    name, layer):
  keras.backend.clear_session()
  model = keras_corpus.get(name).build()
  graph = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD)
  for batch_norm in model.layers:  # Every channel dies.
    if isinstance(batch_norm, keras.layers.BatchNormalization):
      batch_norm.gamma.assign(np.zeros(batch_norm.gamma.shape, np.float32))
  levels = layer_regularizer.LayerRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD)
  # min_channels of the whole group, not one per op group (channel).
  assert graph.alive_counts()[layer] == levels.alive_counts()[layer] == 1
  assert graph.alive_counts() == levels.alive_counts()
  assert float(graph.cost()) == float(levels.cost())


def test_an_einsum_dense_model_equals_the_graph_engine():
  keras.backend.clear_session()
  x = keras.Input((5, 3))
  y = keras.layers.EinsumDense('abc,cd->abd', output_shape=(5, 6),
                               name='proj')(x)
  y = keras.layers.ReLU()(keras.layers.BatchNormalization(name='bn')(y))
  y = keras.layers.Flatten()(y)
  model = keras.Model(x, keras.layers.Dense(2, name='logits')(y))
  graph = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD)
  layer = layer_regularizer.LayerRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=_THRESHOLD)
  batch_norm = model.get_layer('bn')
  batch_norm.gamma.assign(np.array([0, 1, 0, 1, 1, 0], np.float32))
  assert layer.alive_counts() == graph.alive_counts() == {'proj': 3}
  assert float(layer.cost()) == float(graph.cost())
  assert float(layer.term()) == pytest.approx(float(graph.term()), rel=1e-6)


@pytest.mark.parametrize('name', keras_corpus.names())
def test_logistic_sigmoid_layer_level_equals_graph_engine(name):
  # The corpus model with a gate after every batch norm (`_gated`): the
  # models without a batch norm have no gate.
  _check_model(name, 'LogisticSigmoid',
               {k: v + (_NO_COST_HOOK,) for k, v in REFUSED.items()},
               NO_SOURCES)


def test_a_multi_head_attention_model_equals_the_graph_engine():
  # Gamma: the heads and the hidden size (fc's group) keep their width in
  # both engines (no batch norm of their own); the attention is costed from its config by the layer-level
  # engine (`AttentionRule.costed_ops`), from its traced ops by the graph
  # engine.
  keras.backend.clear_session()
  x = keras.Input((5, 3))
  y = keras.layers.BatchNormalization(name='bn')(
      keras.layers.Dense(6, name='fc')(x))
  y = keras.layers.MultiHeadAttention(2, 3, name='mha')(y, y)
  y = keras.layers.Dense(5, name='post')(y)
  y = keras.layers.BatchNormalization(name='post_bn')(y)
  y = keras.layers.Flatten()(keras.layers.ReLU()(y))
  model = keras.Model(x, keras.layers.Dense(2, name='logits')(y))
  for cls in _CLASSES:
    graph = morph_keras.ModelRegularizer(model, cls,
                                         gamma_threshold=_THRESHOLD)
    layer = layer_regularizer.LayerRegularizer(model, cls,
                                               gamma_threshold=_THRESHOLD)
    for dead in ([], [0, 2, 3]):
      for name in ('bn', 'post_bn'):  # fc's group is the hidden size: kept.
        gamma = np.ones([model.get_layer(name).gamma.shape[0]], np.float32)
        gamma[dead] = 0.0
        model.get_layer(name).gamma.assign(gamma)
      assert layer.alive_counts() == graph.alive_counts() == {
          'fc': 6, 'post': 5 - len(dead)}
      assert float(layer.cost()) == float(graph.cost())
      assert float(layer.term()) == pytest.approx(float(graph.term()),
                                                  rel=1e-6)


# Activation counts: the models the layer-level engine refuses. None:
# recurrent layers count no activation in either engine (their rules'
# `activation_ops` is empty, as the graph engine leaves their loop out),
# the SqueezeExcite layer's bottleneck counts its fixed width, and an
# attention layer counts the output channels of the ops the graph engine
# traces it to (`layer_regularizer._attention_activation_calls`).
REFUSED_ACTIVATION = {}
REFUSED_GROUP_LASSO_ACTIVATION = dict(REFUSED_ACTIVATION)


@pytest.mark.parametrize('name', keras_corpus.names())
def test_activation_layer_level_equals_graph_engine(name):
  _check_model(name, 'Activation', REFUSED_ACTIVATION, NO_SOURCES)


@pytest.mark.parametrize('name', keras_corpus.names())
def test_group_lasso_activation_layer_level_equals_graph_engine(name):
  _check_model(name, 'GroupLassoActivation', REFUSED_GROUP_LASSO_ACTIVATION,
               set())
