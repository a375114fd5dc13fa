"""The seam between the registries: every built-in Keras layer kind has its
op handlers, its layer rule, its cost form and its latency kind, or a test
here fails."""

import keras
import pytest

from morph_net.keras import layer_kinds
from morph_net.keras import tracing
from morph_net.surgery import builtin_rules

L = keras.layers
# Ops every trace has besides the layer's own arithmetic.
_BOOKKEEPING = frozenset(['Const', 'Identity', 'NoOp', 'Placeholder',
                          'ReadVariableOp'])


def test_builtin_kinds_agree_with_every_registry():
  assert layer_kinds.check_layer_kinds() == []


def test_every_builtin_rule_has_a_kind_and_back():
  table = builtin_rules.builtin_rule_table()
  declared = [c for kind in layer_kinds.LAYER_KINDS for c in kind.layers]
  assert len(declared) == len(set(declared))
  assert set(declared) == set(table)
  assert layer_kinds.layer_kind(L.Conv1D).name == 'conv'
  assert layer_kinds.layer_kind(L.Masking) is None


def test_a_layer_rule_without_a_kind_fails():
  table = builtin_rules.builtin_rule_table()
  table[L.Masking] = builtin_rules.PassThroughRule()
  assert layer_kinds.check_layer_kinds(rule_table=table) == [
      'Masking has a layer rule (PassThroughRule) but no entry in '
      'layer_kinds.LAYER_KINDS: declare its op types, cost form and latency '
      'kind there.']


def test_a_kind_without_a_layer_rule_fails():
  table = builtin_rules.builtin_rule_table()
  del table[L.Dense]
  assert layer_kinds.check_layer_kinds(rule_table=table) == [
      "Dense (kind 'dense') has no layer rule in builtin_rules."
      'builtin_rule_table(); add a WidthRule there.']


def test_another_rule_class_fails():
  table = builtin_rules.builtin_rule_table()
  table[L.ReLU] = builtin_rules.OpaqueRule()
  assert layer_kinds.check_layer_kinds(rule_table=table) == [
      "ReLU (kind 'activation') has layer rule OpaqueRule, not "
      'PassThroughRule.']


def test_an_op_type_without_a_handler_fails():
  registries = layer_kinds.default_registries()
  del registries['group_lasso']['MaxPool3D']
  assert layer_kinds.check_layer_kinds(registries=registries) == [
      "Kind 'pooling': op type(s) MaxPool3D have no handler in the "
      'group_lasso registry (op_handlers); register one.']


def _replace(name, **fields):
  return tuple(kind._replace(**fields) if kind.name == name else kind
               for kind in layer_kinds.LAYER_KINDS)


def test_a_cost_form_that_disagrees_fails():
  kinds = _replace('activation',
                   cost_op_types=frozenset(['AddV2', 'Mul', 'Relu']))
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Kind 'activation' declares cost forms for AddV2, Mul, Relu; the "
      'resource functions cost AddV2, Elu, LeakyRelu, Mul, Relu '
      '(op_types.COSTED_OP_TYPES).']


def test_a_layer_with_weights_but_no_weighted_cost_form_fails():
  kinds = _replace('dense', op_types=frozenset(['BiasAdd', 'Reshape']),
                   cost_op_types=frozenset(['BiasAdd']),
                   latency_kinds=frozenset(['bias_add']))
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Kind 'dense' has a layer rule with weights (WidthRule) but no "
      'weighted cost form: none of BiasAdd, Reshape is in '
      'op_types.WEIGHTED_OP_TYPES.']


def test_latency_kinds_that_disagree_fail():
  kinds = _replace('add', latency_kinds=frozenset(['add', 'mul']))
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Kind 'add' declares latency kinds add, mul; latency_profile.OP_KINDS "
      'gives its op types add.']


def test_a_cost_form_without_a_latency_kind_fails(monkeypatch):
  # Einsum's gap is known (the attention kind's products, EinsumDense's
  # other equations); without the entry, every kind with Einsum is
  # reported.
  monkeypatch.delitem(layer_kinds.KNOWN_GAPS, 'Einsum')
  kinds = _replace('merge', op_types=frozenset(['Einsum', 'Sub']),
                   cost_op_types=frozenset(['Einsum', 'Sub']),
                   latency_kinds=frozenset(['add']))
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Kind 'einsum_dense': op type Einsum has a cost form but no latency "
      'kind in latency_profile.OP_KINDS.',
      "Kind 'attention': op type Einsum has a cost form but no latency kind "
      'in latency_profile.OP_KINDS.',
      "Kind 'merge': op type Einsum has a cost form but no latency kind in "
      'latency_profile.OP_KINDS.']


def test_a_latency_kind_without_a_cost_form_fails():
  kinds = _replace('activation', op_types=frozenset(['Relu', 'Selu']),
                   cost_op_types=frozenset(['Relu']),
                   latency_kinds=frozenset(['activation']))
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Kind 'activation': op type Selu has latency kind 'activation' but no "
      'cost form in op_types.COSTED_OP_TYPES.']


def test_a_class_in_two_kinds_fails():
  kinds = layer_kinds.LAYER_KINDS + (
      layer_kinds.LayerKind('again', (L.Add,), builtin_rules.AddRule,
                            frozenset(['AddV2']), frozenset(['AddV2']),
                            frozenset(['add'])),)
  assert layer_kinds.check_layer_kinds(kinds) == [
      "Add is in kinds 'add' and 'again'."]


def test_known_gaps_are_op_types_of_some_kind():
  used = set().union(*(kind.op_types for kind in layer_kinds.LAYER_KINDS))
  assert set(layer_kinds.KNOWN_GAPS) <= used


def _example(cls):
  """(layer, input shape, number of inputs) for one built-in class."""
  name = cls.__name__
  rank = next((int(d[0]) for d in ('1D', '2D', '3D') if d in name), 2)
  shape = {1: (8, 4), 2: (8, 8, 4), 3: (4, 4, 4, 4)}[rank]
  if cls in (L.SimpleRNN, L.GRU, L.LSTM):
    return cls(3), (5, 4), 1
  if cls is L.Bidirectional:
    return cls(L.LSTM(3)), (5, 4), 1
  if cls is L.MultiHeadAttention:
    return cls(2, 3), (5, 4), 1  # Self-attention: called on (x, x).
  if cls is L.Dense:
    return cls(3), (4,), 1
  if cls is L.EinsumDense:
    return cls('abc,cd->abd', output_shape=(None, 3), bias_axes='d'), (5, 4), 1
  if cls is L.Embedding:
    return cls(20, 3), (6,), 1  # Token ids (int32 inputs).
  if name.startswith(('Conv', 'SeparableConv')):
    return cls(3, 3, padding='same'), shape, 1
  if name.startswith('DepthwiseConv'):
    return cls(3, padding='same'), shape, 1
  if name.startswith('AveragePooling'):
    return cls(2), shape, 1
  if cls is L.Activation:
    return cls('relu'), shape, 1
  if cls in (L.Dropout, L.GaussianNoise, L.GaussianDropout,
             L.AlphaDropout) or name.startswith('SpatialDropout'):
    return cls(0.5), shape, 1
  if cls is L.Reshape:
    return cls((64, 4)), shape, 1
  if cls in (L.Concatenate, L.Add, L.Subtract, L.Multiply, L.Average,
             L.Maximum, L.Minimum):
    return cls(), shape, 2
  return cls(), shape, 1


def _traced_op_types(layer, shape, inputs):
  keras.backend.clear_session()
  dtype = 'int32' if isinstance(layer, L.Embedding) else None
  tensors = [keras.Input(shape, dtype=dtype) for _ in range(inputs)]
  if isinstance(layer, L.MultiHeadAttention):
    output = layer(tensors[0], tensors[0])
  else:
    output = layer(tensors if inputs > 1 else tensors[0])
  traced = tracing.TracedModel(keras.Model(tensors, output))
  return {op.type for op in traced.forward_ops()
          if '/%s' % layer.name in op.name} - _BOOKKEEPING


_CLASSES = sorted(builtin_rules.builtin_rule_table(),
                  key=lambda c: c.__name__)


@pytest.mark.parametrize('cls', _CLASSES, ids=lambda c: c.__name__)
def test_declared_op_types_are_what_the_layer_traces_to(cls):
  kind = layer_kinds.layer_kind(cls)
  types = _traced_op_types(*_example(cls))
  assert types <= kind.op_types, sorted(types - kind.op_types)
  if kind.name != 'identity_at_inference':
    assert types  # The example traces to the layer's own ops.


def test_grouped_conv_traces_to_a_declared_call():
  types = _traced_op_types(L.Conv2D(4, 3, groups=2), (8, 8, 4), 1)
  assert 'StatefulPartitionedCall' in types
  assert types <= layer_kinds.layer_kind(L.Conv2D).op_types
