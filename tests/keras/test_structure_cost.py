"""Tests for morph_net.keras.structure_cost and the bridge's cost helpers."""

import keras
import pytest

from morph_net import errors
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import model_size_regularizer
from morph_net.network_regularizers import op_types
from morph_net.network_regularizers import resource_function
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm

# Alive channels after _kill_channels (groups: stem+b1_conv2, b2_conv2+b2_proj).
_ALIVE = tm.ALIVE_RESIDUAL


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


class _LatencyCost(object):
  resource_function = staticmethod(
      resource_function.latency_function_factory('V100'))


def test_model_regularizer_names_the_threshold_per_family():
  model = tm.residual_model()
  gamma = model_regularizer.model_regularizer(model, threshold=0.5)
  assert isinstance(gamma.network_regularizer,
                    flop_regularizer.GammaFlopsRegularizer)
  lasso = model_regularizer.model_regularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, 1e-9)
  assert lasso.alive_counts()['stem'] == 8


def test_regularizer_without_threshold_raises():

  class NoThreshold(object):

    def __init__(self, output_boundary, input_boundary=None):
      del output_boundary, input_boundary

  with pytest.raises(ValueError, match='regularizer_class=NoThreshold'):
    model_regularizer.model_regularizer(tm.residual_model(), NoThreshold)


def test_structure_cost_maps_weightless_ops_for_latency():
  coster = structure_cost.StructureCost(tm.residual_model(), _LatencyCost)
  by_type = {}
  for op, name, weighted in coster.costed_ops():
    by_type.setdefault(op.type, set()).add(name)
    assert weighted == (op.type in op_types.WEIGHTED_OP_TYPES)
  assert 'b1_out' in by_type['Relu']
  assert 'logits' in by_type['MatMul']
  full = coster.cost({})
  assert 0 < coster.cost({'b2_conv1': 3, 'b2_conv2': 4, 'b2_proj': 4}) < full


def test_placeholders_map_to_given_layers():
  inner = keras.Sequential(
      [keras.Input((4,)), keras.layers.Dense(3, name='d')], name='inner')
  x = keras.Input((4,))
  model = keras.Model(x, inner(x), name='outer')
  function = tracing.trace_model(model, tracing.get_input_signature(model))
  innermost = tracing.map_placeholders_to_layers(model, function.graph)
  top_level = tracing.map_placeholders_to_layers(
      model, function.graph, layers=model.layers)
  assert set(innermost.values()) == {'d'}
  assert set(top_level.values()) == {'inner'}


def test_placeholders_map_to_every_owner_innermost_first():
  x = keras.Input((3, 2))
  y = keras.layers.Bidirectional(keras.layers.GRU(2, name='gru'),
                                 name='bi')(x)
  inner = keras.Model(x, y, name='inner')
  z = keras.Input((3, 2))
  model = keras.Model(z, inner(z), name='outer')
  function = tracing.trace_model(model, tracing.get_input_signature(model))
  owners = tracing.map_placeholders_to_owners(model, function.graph)
  assert len(owners) == 6  # Kernel, recurrent kernel, bias per direction.
  assert sorted(tuple(names[-2:]) for names in owners.values()) == (
      [('bi', 'inner')] * 6)
  assert sorted(names[1] for names in owners.values()) == (
      ['backward_gru'] * 3 + ['forward_gru'] * 3)


def test_frozen_recurrent_layer_of_a_nested_model_keeps_its_units():
  # Found by tests/property/test_random_models.py: the ops of layers that
  # hold their weights in sublayers (a GRU's cell, an attention layer's
  # projections) inside a nested model were mapped to no layer of the
  # channel model, so a GRU feeding an attention layer rebuild cannot read
  # was regularized, and alive_counts() listed a width rebuild refuses.
  layers = keras.layers
  x = keras.Input((10, 4))
  y = layers.GRU(5, return_sequences=True, name='n_gru')(x)
  y = layers.MultiHeadAttention(1, 2, value_dim=2, output_shape=(4,),
                                name='n_mha')(y, y)
  nested = keras.Model(x, y, name='n')
  z = keras.Input((10, 4))
  model = keras.Model(z, layers.Dense(2, name='logits')(nested(z)))
  gru = model.get_layer('n').get_layer('n_gru')
  for variable in gru.weights:
    values = variable.numpy()
    values[..., [g * 5 + u for g in range(3) for u in (0, 1, 2, 3)]] = 0.0
    variable.assign(values)
  regularizer = model_regularizer.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  assert regularizer.alive_counts() == {'logits': 2}
  # GRU 2*10*3*5*(4+5); attention (T 10, d 5, key_dim = value_dim 2, out
  # 4): 3 x 2*10*5*2 + 2 x 2*10*10*2 + 2*10*2*4; logits 2*10*4*2.
  flops = 2700 + 1560 + 160
  assert float(regularizer.cost()) == flops
  assert structure_cost.StructureCost(regularizer)(
      regularizer.alive_counts()) == flops
  rebuild.rebuild(model, regularizer)


def _kill_channels(model):
  """Zeroes the batch-norm gammas of the channels _ALIVE removes."""
  tm.randomize_batch_norms(model)
  for bn, keep in (('stem_bn', 5), ('b1_conv2_bn', 5), ('b1_conv1_bn', 3),
                   ('b2_conv2_bn', 7), ('b2_proj_bn', 7)):
    gamma = model.get_layer(bn).gamma
    value = keras.ops.convert_to_numpy(gamma).copy()
    value[keep:] = 0.0
    gamma.assign(value)


@pytest.mark.parametrize('regularizer_class,kwargs', [
    (flop_regularizer.GammaFlopsRegularizer, {}),
    (model_size_regularizer.GammaModelSizeRegularizer, {}),
    (latency_regularizer.GammaLatencyRegularizer, {'hardware': 'V100'}),
    (latency_regularizer.GammaLatencyRegularizer,
     {'hardware': 'MEMORY_LATENCY', 'batch_size': 4}),
])
def test_structure_cost_equals_the_regularizers_cost(regularizer_class,
                                                     kwargs):
  model = tm.residual_model()
  _kill_channels(model)
  regularizer = model_regularizer.ModelRegularizer(
      model, regularizer_class, gamma_threshold=1e-3, **kwargs)
  assert regularizer.alive_counts() == _ALIVE
  cost = structure_cost.StructureCost(regularizer)
  assert cost.traced is regularizer.traced
  assert cost(_ALIVE) == pytest.approx(float(regularizer.cost()), rel=1e-6)
  assert cost({}) > cost(_ALIVE)


def test_structure_costs_of_flops_and_size_match_the_rebuilt_model():
  model = tm.residual_model()
  flops = structure_cost.StructureCost(model)
  size = structure_cost.StructureCost(flops.traced,
                                      resource_function.model_size_function)
  rebuilt = rebuild.rebuild(model, _ALIVE)
  assert flops(_ALIVE) == tm.hand_flops(rebuilt) == 294854
  assert size(_ALIVE) == tm.kernel_params(rebuilt) == 1123


def test_resource_given_as_function_instance_or_class():
  model = tm.residual_model()
  traced = tracing.TracedModel(model)
  by_class = structure_cost.StructureCost(
      traced, model_size_regularizer.GammaModelSizeRegularizer)
  assert by_class({}) == tm.kernel_params(model)
  latency = model_regularizer.ModelRegularizer(
      traced, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware='T4', batch_size=8)
  by_instance = structure_cost.StructureCost(
      traced, latency.network_regularizer)
  by_function = structure_cost.StructureCost(
      traced, resource_function.latency_function_factory('T4', 8))
  assert by_instance({}) == by_function({})
  assert by_instance({}) == pytest.approx(float(latency.cost()), rel=1e-6)


def test_latency_class_is_refused_not_costed_as_flops():
  with pytest.raises(errors.InvalidArgumentError,
                     match='GammaLatencyRegularizer costs latency on a device '
                     'given to each instance.*latency_function_factory'):
    structure_cost.StructureCost(tm.residual_model(),
                                 latency_regularizer.GammaLatencyRegularizer)


def test_something_else_as_resource_is_refused():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected a resource function, a network '
                     r"regularizer.*Received: resource='flops' \(str\)"):
    structure_cost.resource_function_of('flops')


def test_structure_the_model_cannot_take_is_refused():
  cost = structure_cost.StructureCost(tm.residual_model())
  with pytest.raises(errors.StructureError, match='equal widths'):
    cost({'stem': 3})
  # The dead branch vanishes; its Add keeps the skip connection.
  assert cost.plan({'b1_conv1': 0}).vanished == {
      'b1_conv1', 'b1_conv1_bn', 'b1_conv1_relu', 'b1_conv2', 'b1_conv2_bn'}


def test_attention_keeping_its_heads_is_costed_at_its_inner_widths():
  # Found by tests/property/test_random_models.py: a MultiHeadAttention
  # whose heads rebuild cannot remove (here: another output shape) was
  # costed by StructureCost at the layer's widths (4 -> 4) instead of its
  # projections' (4 -> 6, 6 -> 4) and its products' own.
  layers = keras.layers
  x = keras.Input((4, 4))
  a = layers.MultiHeadAttention(2, 3, output_shape=(4,), name='mha')(x, x)
  y = layers.Dense(5, name='ffn')(a)
  model = keras.Model(x, layers.Dense(2, name='logits')(y))
  ffn = model.get_layer('ffn')
  kernel, bias = ffn.kernel.numpy(), ffn.bias.numpy()
  kernel[:, [1, 3]] = 0.0
  bias[[1, 3]] = 0.0
  ffn.kernel.assign(kernel)
  ffn.bias.assign(bias)
  regularizer = model_regularizer.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  alive = regularizer.alive_counts()
  assert alive == {'ffn': 3, 'logits': 2}
  # Per head (T 4, d 4, key_dim = value_dim 3): query, key, value 3 x
  # 2*4*4*3, QK^T and attention x V 2 x 2*4*4*3, output 2*4*3*4: 576.
  mha = 2 * 576
  # ffn 2*4*4*3 (alive) or 2*4*4*5; logits 2*4*3*2 or 2*4*5*2.
  assert float(regularizer.cost()) == mha + 96 + 48 == 1296
  cost = structure_cost.StructureCost(regularizer)
  assert cost(alive) == 1296
  assert cost({}) == mha + 160 + 80 == 1392
  assert cost({'ffn': 1}) == mha + 32 + 16


def test_a_plain_model_costs_a_dense_on_every_position_like_the_regularizer():
  """A Dense on a [batch, 6, 8] input runs its 8 x 16 MatMul on 6 rows per
  example. StructureCost built from the model alone (no regularizer, whose
  manager used to be the only reader refining Tensordot's reshape) costed
  one row: 352 FLOPs instead of 1,632."""
  inputs = keras.Input((6, 8))
  x = keras.layers.Dense(16, name='d')(inputs)
  x = keras.layers.GlobalAveragePooling1D()(x)
  model = keras.Model(inputs, keras.layers.Dense(3, name='o')(x))
  expected = 2 * 6 * 8 * 16 + 2 * 16 * 3
  assert expected == 1632
  assert structure_cost.StructureCost(model)({}) == expected
  assert structure_cost.StructureCost(model)({'d': 4}) == (
      2 * 6 * 8 * 4 + 2 * 4 * 3)
  regularizer = model_regularizer.ModelRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=1e-3)
  assert float(regularizer.cost()) == expected
