"""Tests for morph_net.keras.regularizable: what the bridge regularizes."""

import logging

import keras
import pytest

from morph_net import keras as morph_keras
from morph_net.keras import recurrent
from morph_net.keras import regularizable
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import channel_model
from morph_net.testing import surgery_models

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _reshape_model():
  """'project' feeds a Reshape (rebuild cannot narrow it); 'conv' can."""
  x = keras.Input((5,))
  y = L.Dense(32, name='project')(x)
  y = L.Reshape((4, 4, 2), name='reshape')(y)
  y = L.Conv2D(6, 3, name='conv')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='reshaped')


def test_fixed_width_layers_name_the_reason():
  fixed = regularizable.fixed_width_layers(
      channel_model.analyze(_reshape_model()))
  assert fixed['logits'] == regularizable.OUTPUT_REASON
  assert fixed['project'].startswith("it feeds layer 'reshape' (Reshape)")
  assert 'conv' not in fixed
  assert 'gap' not in fixed


def test_frozen_and_output_groups_are_not_regularized(caplog):
  model = _reshape_model()
  with caplog.at_level(logging.WARNING):
    regularizer = morph_keras.ModelRegularizer(
        model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6)
  # The logits and the frozen projection keep their width: listed, all
  # alive, never regularized.
  assert regularizer.alive_counts() == {'conv': 6, 'project': 32,
                                        'logits': 2}
  warnings = [r.getMessage() for r in caplog.records
              if 'Rebuild cannot narrow' in r.getMessage()]
  assert len(warnings) == 1
  assert '1 layer(s)' in warnings[0]
  assert "'project': it feeds layer 'reshape' (Reshape)" in warnings[0]
  assert 'logits' not in warnings[0]


def test_grouped_conv_keeps_both_widths_with_a_reason():
  model = surgery_models.grouped_conv_model()
  fixed = regularizable.fixed_width_layers(channel_model.analyze(model))
  assert fixed['c'] == ("it feeds the grouped conv 'g' (Conv2D) (groups=4: "
                        'its widths must stay multiples of the groups)')
  assert fixed['g'] == ("it is the output of the grouped conv 'g' (Conv2D) "
                        '(groups=4: its widths must stay multiples of the '
                        'groups)')
  assert 'p' not in fixed


def test_warning_suggests_a_layer_rule_only_for_unknown_layers(caplog):

  class Mystery(L.Layer):

    def call(self, x):
      return x * 2.0

  def warning(model):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      morph_keras.ModelRegularizer(
          model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6)
    (message,) = [r.getMessage() for r in caplog.records
                  if 'Rebuild cannot narrow' in r.getMessage()]
    return message

  x = keras.Input((6, 6, 3))
  y = L.Conv2D(4, 1, name='c')(x)
  y = L.Conv2D(8, 3, groups=2, name='g')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  grouped = warning(keras.Model(x, L.Dense(2, name='logits')(y)))
  assert grouped.endswith('MorphNet does not regularize them and keeps '
                          'their widths.')
  x = keras.Input((6, 6, 3))
  y = Mystery(name='mystery')(L.Conv2D(4, 1, name='c')(x))
  y = L.GlobalAveragePooling2D(name='gap')(L.Conv2D(5, 1, name='d')(y))
  unknown = warning(keras.Model(x, L.Dense(2, name='logits')(y)))
  assert "'c': it feeds layer 'mystery' (Mystery)" in unknown
  assert unknown.endswith('; register a layer rule (morph_net.surgery.'
                          'register_layer_rule) for a layer rebuild does not '
                          'understand.')


def test_excluded_ops_and_user_blacklist_combine():
  model = _reshape_model()
  traced = tracing.TracedModel(model)
  excluded = regularizable.excluded_ops(traced)
  assert sorted(excluded.layers) == ['logits', 'project']
  assert all(n.split('/')[1] in ('project_1', 'logits_1')
             for n in excluded.op_names)
  regularizer = morph_keras.ModelRegularizer(
      traced, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6,
      regularizer_blacklist=['conv'])
  assert regularizer.alive_counts() == {'project': 32, 'logits': 2}


def test_blacklist_regex_is_anchored_and_escaped():
  regex = regularizable.blacklist_regex(['m/a_1/MatMul', 'm/b+/Conv2D'])
  assert regex == r'^(?:m/a_1/MatMul|m/b\+/Conv2D)$'
  assert regularizable.blacklist_regex([]) is None
  assert regularizable.ExcludedOps([], {}).blacklist() == []


def test_subclassed_model_keeps_only_its_outputs(caplog):

  class Net(keras.Model):

    def __init__(self):
      super().__init__()
      self.hidden = L.Dense(6, name='hidden')
      self.out = L.Dense(2, name='out')

    def call(self, x):
      return self.out(self.hidden(x))

  model = Net()
  model(keras.ops.zeros((1, 3)))
  with caplog.at_level(logging.INFO):
    excluded = regularizable.excluded_ops(
        tracing.TracedModel(model, input_shape=(3,)))
  assert excluded.layers == {}
  assert len(excluded.op_names) == 1
  assert any('Only the outputs of model' in r.getMessage()
             for r in caplog.records)


def test_nested_model_layers_are_regularized_like_others(caplog):
  inner_in = keras.Input((6, 6, 3))
  inner = keras.Model(inner_in, L.Conv2D(5, 3, name='inner_conv')(inner_in),
                      name='base')
  x = keras.Input((6, 6, 3))
  y = L.GlobalAveragePooling2D(name='gap')(inner(x))
  y = L.Reshape((5, 1), name='reshape')(y)
  model = keras.Model(x, L.Flatten(name='flat')(y))
  with caplog.at_level(logging.WARNING):
    regularizer = morph_keras.ModelRegularizer(
        model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6)
  assert regularizer.alive_counts() == {'inner_conv': 5}  # Kept whole.
  warnings = [r.getMessage() for r in caplog.records
              if 'Rebuild cannot narrow' in r.getMessage()]
  assert len(warnings) == 1
  assert "'inner_conv': it feeds layer 'reshape' (Reshape)" in warnings[0]


def test_keep_output_widths_false_regularizes_outputs():
  model = _reshape_model()
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-6,
      keep_output_widths=False)
  assert regularizer.alive_counts() == {'conv': 6, 'project': 32,
                                        'logits': 2}


def test_uncosted_arithmetic_is_named_by_layer(caplog):
  x = keras.Input((8, 8, 4))
  y = L.Conv2D(8, 3, groups=2, name='grouped')(x)
  y = L.Reshape((36, 8), name='tokens')(y)
  y = L.MultiHeadAttention(num_heads=2, key_dim=3, name='mha')(y, y)
  y = L.LSTM(3, name='lstm')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  traced = tracing.TracedModel(model)
  found = regularizable.uncosted_layers(traced)
  # The engine reads grouped convs in function calls and attention Einsums;
  # only the recurrent loop is left, until the bridge costs it from config.
  assert 'grouped' not in found and 'mha' not in found
  assert 'While' in found['lstm']
  calls = recurrent.RecurrentCalls(traced)
  assert regularizable.uncosted_layers(traced, calls.ops()) == {}
  with caplog.at_level(logging.WARNING):
    regularizable.warn_uncosted(traced, calls.ops())
  assert not [r for r in caplog.records
              if 'cannot read' in r.getMessage()]
