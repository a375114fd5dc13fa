"""keras.ops operations in functional models: channel model and rebuild.

`ops.relu(x)`, `ops.add(a, b)`, `x * 2.0`, `ops.mean(x, axis=[1, 2])`,
`ops.concatenate`, `ops.reshape` and `x[...]` on symbolic tensors are
operation nodes of the model's graph; every one of them has a rule
(`op_rules`), so the layers around them narrow and rebuild re-applies them
to the narrowed tensors.
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rules
from morph_net.surgery import op_rules
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import rebuild
from morph_net.testing import keras_corpus

L = keras.layers
ops = keras.ops


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _groups(channels):
  return {frozenset(group) for group in channels.groups()}


def _data(model, seed=0):
  return np.random.default_rng(seed).normal(
      size=(2,) + tuple(model.input_shape[1:])).astype('float32')


def _op_names(model):
  return sorted(type(n.operation).__name__
                for nodes in model._nodes_by_depth.values() for n in nodes  # pylint: disable=protected-access
                if not isinstance(n.operation, L.Layer))


def _model(body, shape=(4, 4, 3)):
  """conv 'a' (6) -> body(y) -> GAP? -> Dense 'logits'."""
  x = keras.Input(shape)
  y = L.Conv2D(6, 1, name='a')(x)
  y = body(y)
  if len(y.shape) == 4:
    y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


@pytest.mark.parametrize('body', [
    ops.relu, ops.sigmoid, ops.gelu, ops.abs, ops.exp,
    lambda y: ops.clip(y, 0.0, 6.0), lambda y: ops.cast(y, 'float32'),
    lambda y: ops.leaky_relu(y, 0.1), lambda y: -y,
    lambda y: y * 2.0, lambda y: 2.0 + y, lambda y: y / 3.0, lambda y: y ** 2,
    lambda y: ops.multiply(y, np.float32(0.5)),
    lambda y: ops.mean(y, axis=[1, 2]), lambda y: ops.sum(y, axis=(1, 2)),
    lambda y: ops.max(y, axis=1), lambda y: ops.mean(y, axis=-2,
                                                      keepdims=True),
    lambda y: y[:, 1:3], lambda y: y[..., None, :], lambda y: y[:, :, 0],
    lambda y: ops.reshape(y, (-1, 16, 6)),
    lambda y: ops.reshape(y, (-1, 96)),
    lambda y: ops.concatenate([y, y], axis=1),
    lambda y: ops.squeeze(ops.expand_dims(y, 1), 1),
    lambda y: ops.transpose(y, (0, 2, 1, 3)),
], ids=['relu', 'sigmoid', 'gelu', 'abs', 'exp', 'clip', 'cast', 'leaky',
        'neg', 'mul_scalar', 'radd_scalar', 'div_scalar', 'pow_scalar',
        'mul_numpy_scalar', 'mean', 'sum', 'max',
        'mean_keepdims', 'getitem_slice', 'getitem_newaxis',
        'getitem_index', 'reshape_tokens', 'reshape_flatten',
        'concat_positions', 'expand_squeeze', 'transpose'])
def test_single_input_ops_let_the_conv_narrow(body):
  model = _model(body)
  channels = channel_model.analyze(model)
  assert channels.can_change_width('a') == (True, '')
  rebuilt = rebuild.rebuild(model, {'a': 4}, transfer_weights=True)
  assert _op_names(rebuilt) == _op_names(model)
  inputs = rebuilt.get_layer('logits').input.shape[-1]
  original = model.get_layer('logits').input.shape[-1]
  assert inputs == (16 * 4 if original == 96 else 4)
  identity = rebuild.rebuild(model, {}, transfer_weights=True)
  data = _data(model)
  np.testing.assert_array_equal(model.predict(data, verbose=0),
                                identity.predict(data, verbose=0))


def test_binary_ops_merge_the_groups_of_their_operands():
  x = keras.Input((4, 4, 3))
  a = L.Conv2D(6, 1, name='a')(x)
  b = L.Conv2D(6, 1, name='b')(x)
  c = L.Conv2D(6, 1, name='c')(x)
  d = L.Conv2D(6, 1, name='d')(x)
  y = ops.maximum(ops.subtract(a, b), ops.multiply(c, ops.sigmoid(d)))
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D(name='gap')(y)))
  channels = channel_model.analyze(model)
  assert frozenset('abcd') in _groups(channels)
  rebuilt = rebuild.rebuild(model, dict.fromkeys('abcd', 2),
                            transfer_weights=True)
  assert rebuilt.get_layer('logits').kernel.shape == (2, 2)
  assert _op_names(rebuilt) == _op_names(model)


def test_one_channel_operand_is_broadcast():
  x = keras.Input((4, 4, 3))
  a = L.Conv2D(6, 1, name='a')(x)
  gate = L.Conv2D(1, 1, name='gate')(x)
  y = ops.multiply(a, ops.sigmoid(gate))
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D(name='gap')(y)))
  channels = channel_model.analyze(model)
  assert channels.can_change_width('a') == (True, '')
  assert channels.can_change_width('gate') == (
      False, "it is broadcast by layer 'multiply' (keras.ops Multiply)")
  rebuilt = rebuild.rebuild(model, {'a': 3})
  assert rebuilt.get_layer('logits').kernel.shape == (3, 2)


def test_constant_with_one_value_per_channel_keeps_the_width():
  scale = np.arange(6, dtype='float32')
  model = _model(lambda y: y * scale)
  channels = channel_model.analyze(model)
  assert channels.can_change_width('a') == (
      False, "it meets a constant of 6 channels in layer 'multiply' "
      '(keras.ops Multiply), which cannot follow a narrower tensor')
  with pytest.raises(errors.StructureError) as raised:
    rebuild.rebuild(model, {'a': 4})
  assert str(raised.value) == (
      "The width of layers ['a'] cannot change (6 -> 4): it meets a "
      "constant of 6 channels in layer 'multiply' (keras.ops Multiply), "
      'which cannot follow a narrower tensor. Keep their original width in '
      'the structure.')


@pytest.mark.parametrize('body,name', [
    (lambda y: ops.mean(y, axis=-1), 'mean'),
    (lambda y: ops.sum(y, axis=[1, 2, 3]), 'sum'),
    (lambda y: ops.max(y), 'max'),
    (lambda y: ops.mean(y, axis=3, keepdims=True), 'mean'),
])
def test_reduction_over_the_channel_axis_is_refused(body, name):
  x = keras.Input((4, 4, 3))
  y = body(L.Conv2D(6, 1, name='a')(x))
  y = ops.reshape(y, (-1, int(np.prod(y.shape[1:]))))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  channels = channel_model.analyze(model)
  assert channels.can_change_width('a') == (
      False, "it feeds layer %r (keras.ops %s), which reduces over the "
      'channel axis' % (name, name.capitalize()))


@pytest.mark.parametrize('body,why', [
    (lambda y: y[..., 1:3], 'which does not keep the channel axis whole'),
    (lambda y: y[:, :, :, 0], 'which does not keep the channel axis whole'),
    (lambda y: y[:, :, :, :, None],
     'which does not keep the channel axis whole'),
    (lambda y: ops.reshape(y, (-1, 4, 12)), 'which does not keep the last '
     'axis'),
    (lambda y: ops.concatenate([y, np.zeros((1, 4, 4, 6), 'float32')],
                               axis=1),
     'which concatenates a constant'),
    (lambda y: ops.expand_dims(y, -1), 'which does not keep the last axis'),
    (lambda y: ops.transpose(y, (0, 3, 1, 2)),
     'which moves the channel axis'),
])
def test_ops_that_mix_channels_are_opaque(body, why):
  x = keras.Input((4, 4, 3))
  y = body(L.Conv2D(6, 1, name='a')(x))
  y = ops.reshape(y, (-1, int(np.prod(y.shape[1:]))))
  model = keras.Model(x, L.Dense(2, name='logits')(y))
  channels = channel_model.analyze(model)
  ok, reason = channels.can_change_width('a')
  assert not ok and reason.endswith(why), reason


def test_concatenate_op_on_the_channel_axis_skips_a_vanished_input():
  x = keras.Input((4, 4, 3))
  a = L.Conv2D(6, 1, name='a')(x)
  b = L.Conv2D(5, 1, name='b')(x)
  y = ops.concatenate([a, b], axis=3)
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D(name='gap')(y)))
  rebuilt = rebuild.rebuild(model, {'a': 0, 'b': 3}, transfer_weights=True)
  assert rebuilt.get_layer('logits').kernel.shape == (3, 2)
  assert 'a' not in [l.name for l in rebuilt.layers]


def test_reshape_op_shape_names_the_rebuilt_width():
  x = keras.Input((6,))
  y = L.Dense(8, name='a')(x)
  y = ops.reshape(y, (-1, 1, 1, 8))
  y = L.Conv2D(3, 1, name='conv')(y)
  model = keras.Model(x, L.Dense(2, name='logits')(ops.reshape(y, (-1, 3))))
  rebuilt = rebuild.rebuild(model, {'a': 5}, transfer_weights=True)
  reshape = [n.operation for nodes in rebuilt._nodes_by_depth.values()  # pylint: disable=protected-access
             for n in nodes if type(n.operation).__name__ == 'Reshape']
  assert sorted(r.newshape for r in reshape) == [(-1, 1, 1, 5), (-1, 3)]
  assert rebuilt.get_layer('conv').kernel.shape == (1, 1, 5, 3)


def test_corpus_keras_ops_model_groups():
  model = keras_corpus.keras_ops()
  channels = channel_model.analyze(model)
  assert _groups(channels) == {frozenset(['conv1', 'res']),
                               frozenset(['left']), frozenset(['right']),
                               frozenset(['fc']), frozenset(['logits'])}
  assert channels.original_structure() == {
      'conv1': 12, 'res': 12, 'right': 4, 'left': 6, 'fc': 8}
  rebuilt = rebuild.rebuild(model, {'conv1': 5, 'res': 5, 'left': 2,
                                    'right': 3, 'fc': 4},
                            transfer_weights=True)
  assert rebuilt.get_layer('fc').kernel.shape == (5, 4)
  assert rebuilt.get_layer('logits').kernel.shape == (4, 3)


def test_every_op_class_has_a_rule():
  rules = layer_rules.get_layer_rules()
  table = op_rules.op_rule_table()
  assert len(table) >= 60
  for cls, rule in table.items():
    assert type(rules.find(cls)) is type(rule)  # pylint: disable=unidiomatic-typecheck
  assert isinstance(rules.get(keras.src.ops.numpy.Mean),
                    op_rules.ReductionOpRule)


def test_residual_branch_added_with_an_op_cannot_vanish():
  x = keras.Input((4, 4, 3))
  y = L.Conv2D(6, 1, name='c1')(x)
  b = L.Conv2D(6, 1, name='b2')(L.Conv2D(4, 1, name='b1')(y))
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D(name='gap')(ops.add(y, b))))
  with pytest.raises(errors.StructureError) as raised:
    rebuild.rebuild(model, {'b1': 0})
  assert str(raised.value).startswith(
      "Layer 'add' (keras.ops Add) has inputs that vanished")
  assert plan_lib.rebuildable_structure(channel_model.analyze(model),
                                        {'b1': 0}) == {'b1': 1}
