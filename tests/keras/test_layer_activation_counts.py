"""Activation counts of recurrent and custom layers, counted by hand.

The graph engine (`morph_net.keras.ModelRegularizer`) counts the alive
output channels of every conv and matmul op it analyses
(`activation_count_function`). It cuts a recurrent layer's loop out of its
analysis and costs the layer from its config, FLOPs and model size only:
a SimpleRNN, GRU, LSTM or Bidirectional layer counts no activation (it
warns). A Squeeze-Excitation layer written as a custom layer traces to two
matmuls: the squeeze's output is its bottleneck, of fixed width (always
alive, never regularized), and the excite's is the layer's output group.
The layer-level engine (`layer_regularizer.LayerRegularizer`) counts the
same through its rules' activation-count hook (`LayerRule.activation_ops`:
none of a recurrent layer's ops, both of the SE layer's) and a fixed
output's channels.
"""

import logging

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import layer_regularizer
from morph_net.keras import layer_structure_cost
from morph_net.keras import structure_cost
from morph_net.network_regularizers import activation_regularizer
from morph_net.surgery import layer_rules
from morph_net.testing import custom_layers

L = keras.layers
_GAMMA = activation_regularizer.GammaActivationRegularizer
_GROUP_LASSO = activation_regularizer.GroupLassoActivationRegularizer
_THRESHOLD = 1e-6

_RECURRENT = {
    'simple_rnn': lambda: L.SimpleRNN(3, name='rnn'),
    'gru': lambda: L.GRU(3, name='rnn'),
    'lstm': lambda: L.LSTM(3, name='rnn'),
    'bidirectional_lstm': lambda: L.Bidirectional(L.LSTM(3), name='rnn'),
}


def _recurrent_model(kind):
  """fc (4) -> bn -> recurrent 'rnn' (3 units) -> logits (2)."""
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  x = keras.Input((5, 3))
  y = L.BatchNormalization(name='bn')(L.Dense(4, name='fc')(x))
  y = _RECURRENT[kind]()(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


def _both(model, cls, **kwargs):
  kwargs.setdefault('gamma_threshold' if cls is _GAMMA else 'threshold',
                    _THRESHOLD)
  return (morph_keras.ModelRegularizer(model, cls, **kwargs),
          layer_regularizer.LayerRegularizer(model, cls, **kwargs))


def _values(regularizer):
  return float(regularizer.cost()), float(regularizer.term())


@pytest.mark.parametrize('kind', sorted(_RECURRENT))
def test_a_recurrent_layer_counts_no_activation_under_gamma(kind):
  model = _recurrent_model(kind)
  graph, layer = _both(model, _GAMMA)
  # fc 4 + logits 2 (kept: a model output); the recurrent layer 0. Term:
  # fc's output channels' |gamma| (1 each).
  assert _values(layer) == _values(graph) == (6.0, 4.0)
  model.get_layer('bn').gamma.assign(np.array([0, 0.5, 0, 2], np.float32))
  assert _values(layer) == _values(graph) == (2.0 + 2.0, 2.5)
  assert layer.alive_counts() == graph.alive_counts() == {'fc': 2}


def _rms(kernel):
  """Per column (last axis): sqrt(mean(w^2)) over the other axes."""
  kernel = np.asarray(kernel, np.float64)
  return np.sqrt(np.mean(np.square(kernel.reshape(-1, kernel.shape[-1])),
                         axis=0))


@pytest.mark.parametrize('kind', sorted(_RECURRENT))
def test_a_recurrent_layer_counts_no_activation_under_group_lasso(kind):
  model = _recurrent_model(kind)
  graph, layer = _both(model, _GROUP_LASSO)
  fc = model.get_layer('fc')
  kernel = keras.ops.convert_to_numpy(fc.kernel).copy()
  kernel[:, [1, 3]] = 0.0
  fc.kernel.assign(kernel)
  # The units die with every weight of theirs (all directions).
  rnn = model.get_layer('rnn')
  for variable in rnn.weights:
    value = keras.ops.convert_to_numpy(variable).copy()
    value.reshape(-1, 3)[:, 0] = 0.0  # Unit 0 of each gate.
    if variable.path.endswith('recurrent_kernel'):
      value[0, :] = 0.0  # Its row.
    variable.assign(value)
  # fc 2 alive + logits 2; the recurrent units (2 alive) count nothing.
  # Term: the group-lasso norms of fc's filters.
  term = float(np.sum(_rms(kernel)))
  assert layer.alive_counts() == graph.alive_counts() == {
      'fc': 2, 'rnn': 2, 'logits': 2}
  for regularizer in (layer, graph):
    cost, got_term = _values(regularizer)
    assert cost == 4.0
    assert got_term == pytest.approx(term, rel=1e-6)


def test_the_layer_level_engine_warns_it_leaves_a_recurrent_layer_out(
    caplog):
  model = _recurrent_model('lstm')
  with caplog.at_level(logging.WARNING):
    layer_regularizer.LayerRegularizer(model, 'GammaActivationRegularizer',
                                       gamma_threshold=_THRESHOLD)
  assert [r.getMessage() for r in caplog.records
          if r.getMessage().startswith("Layer 'rnn'")] == [
              "Layer 'rnn' (LSTM): the activation count leaves it out: its "
              'layer rule RecurrentRule counts the output channels of none '
              'of its ops (activation_ops), as the graph engine counts none '
              'of the ops it traces to.']
  caplog.clear()
  with caplog.at_level(logging.WARNING):  # The graph engine's warning.
    morph_keras.ModelRegularizer(model, _GAMMA,
                                 gamma_threshold=_THRESHOLD).cost()
  assert ("Recurrent layer 'rnn' (LSTM): its activation_count_function "
          'cost is not counted') in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    layer_regularizer.LayerRegularizer(model, 'GammaFlopsRegularizer',
                                       gamma_threshold=_THRESHOLD)
  assert not [r for r in caplog.records
              if 'activation count' in r.getMessage()]


def _squeeze_excite_model():
  """conv1 (8) -> bn1 -> relu -> SqueezeExcite 'se' (bottleneck 2) ->
  conv2 (6) -> bn2 -> relu -> pool -> logits (2)."""
  custom_layers.register_squeeze_excite()
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(8, 1, name='conv1')(x)
  y = L.ReLU()(L.BatchNormalization(name='bn1')(y))
  y = custom_layers.SqueezeExcite(name='se')(y)
  y = L.Conv2D(6, 1, name='conv2')(y)
  y = L.ReLU()(L.BatchNormalization(name='bn2')(y))
  y = L.GlobalAveragePooling2D()(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


def test_a_squeeze_excite_layer_counts_its_bottleneck_and_excite():
  model = _squeeze_excite_model()
  graph, layer = _both(model, _GAMMA)
  # conv1 8 + squeeze 2 (fixed) + excite 8 (conv1's group) + conv2 6 +
  # logits 2. Term: conv1's group twice (conv1, excite), conv2's once.
  assert _values(layer) == _values(graph) == (26.0, 8.0 * 2 + 6.0)
  model.get_layer('bn1').gamma.assign(
      np.array([0, 0, 0, 1, 1, 1, 1, 0.5], np.float32))
  model.get_layer('bn2').gamma.assign(
      np.array([0, 1, 1, 1, 1, 2], np.float32))
  assert _values(layer) == _values(graph) == (5 + 2 + 5 + 5 + 2.0,
                                              4.5 * 2 + 6.0)
  assert layer.alive_counts() == graph.alive_counts() == {
      'conv1': 5, 'conv2': 5}
  # Every channel of conv1's group dead but min_channels (1): the
  # bottleneck still counts its 2.
  model.get_layer('bn1').gamma.assign(np.zeros([8], np.float32))
  assert _values(layer)[0] == _values(graph)[0] == 1 + 2 + 1 + 5 + 2.0


def test_a_squeeze_excite_layer_under_group_lasso():
  model = _squeeze_excite_model()
  graph, layer = _both(model, _GROUP_LASSO)
  conv1, conv2 = model.get_layer('conv1'), model.get_layer('conv2')
  excite = model.get_layer('se').excite
  kernels = {}
  for variable, columns in ((conv1.kernel, [0, 1]),
                            (excite.kernel, [0, 1, 2]),
                            (conv2.kernel, [5])):
    value = keras.ops.convert_to_numpy(variable).copy()
    value[..., columns] = 0.0
    variable.assign(value)
    kernels[variable.path] = value
  # conv1's group: the max of conv1's and excite's filter norms; channels
  # 0-1 die (channel 2's conv1 filter lives). conv1 6 + squeeze 2 +
  # excite 6 + conv2 5 + logits 2.
  group = np.maximum(_rms(kernels[conv1.kernel.path]),
                     _rms(kernels[excite.kernel.path]))
  term = 2 * float(np.sum(group)) + float(np.sum(
      _rms(kernels[conv2.kernel.path])))
  assert layer.alive_counts() == graph.alive_counts() == {
      'conv1': 6, 'conv2': 5, 'logits': 2}
  for regularizer in (layer, graph):
    cost, got_term = _values(regularizer)
    assert cost == 6 + 2 + 6 + 5 + 2.0
    assert got_term == pytest.approx(term, rel=1e-6)


def test_structure_costs_of_activation_counts():
  model = _squeeze_excite_model()
  graph, layer = _both(model, _GAMMA)
  layer_cost = layer_structure_cost.LayerStructureCost(layer)
  graph_cost = structure_cost.StructureCost(graph)
  for structure, want in (({}, 26.0), ({'conv1': 3, 'conv2': 4},
                                       3 + 2 + 3 + 4 + 2.0)):
    assert layer_cost(structure) == graph_cost(structure) == want
  model = _recurrent_model('bidirectional_lstm')
  graph, layer = _both(model, _GAMMA)
  layer_cost = layer_structure_cost.LayerStructureCost(layer)
  graph_cost = structure_cost.StructureCost(graph)
  assert layer_cost({'fc': 3}) == graph_cost({'fc': 3}) == 3 + 2.0


class _StrayActivationRule(custom_layers.SqueezeExciteRule):
  """Counts an op its cost hook does not give."""

  def activation_ops(self, call, costed_ops):
    return [costed_ops[0]._replace(name='stray')]


def test_an_activation_hook_returning_an_op_not_costed_is_refused():
  model = _squeeze_excite_model()
  rules = layer_rules.get_layer_rules().copy()
  rules.register(custom_layers.SqueezeExcite, _StrayActivationRule())
  with pytest.raises(errors.UnsupportedModelError) as e:
    layer_regularizer.LayerRegularizer(
        model, 'GammaActivationRegularizer', gamma_threshold=_THRESHOLD,
        layer_rules=rules)
  assert str(e.value) == (
      "Layer 'se' (SqueezeExcite): the activation-count hook of its layer "
      'rule _StrayActivationRule (activation_ops) returned \'stray\', which '
      'is not one of the ops of its cost hook (costed_ops). Return a '
      'sublist of the costed_ops it is given.')
  # FLOPs do not read the hook.
  flops = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=_THRESHOLD,
      layer_rules=rules)
  assert float(flops.cost()) > 0


def test_the_default_hook_counts_every_costed_op():
  model = _squeeze_excite_model()
  layer = layer_regularizer.LayerRegularizer(
      model, 'GammaActivationRegularizer', gamma_threshold=_THRESHOLD)
  # The SE rule has no activation hook of its own: both its ops count.
  assert 'activation_ops' not in vars(custom_layers.SqueezeExciteRule)
  assert [(c.layer_name, c.op.name, len(c.forms), c.fixed_outputs)
          for c in layer._calls] == [  # pylint: disable=protected-access
              ('conv1', 'kernel', 1, 0.0), ('se', 'squeeze', 1, 2.0),
              ('se', 'excite', 1, 0.0), ('conv2', 'kernel', 1, 0.0),
              ('logits', 'kernel', 1, 0.0)]
