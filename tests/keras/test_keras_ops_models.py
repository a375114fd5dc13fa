"""Models written with keras.ops, and a detector head, round trip.

Issue 22: with `ops.relu` after a batch norm, an `ops.add` residual, a
scalar multiply and `ops.mean`, every layer upstream of an op was kept at
full width; a detector whose per-scale boxes are concatenated along the
positions axis failed to rebuild. Both now prune: `alive_counts()` rebuilds
with transferred weights, `StructureCost` of it is the regularizer's cost,
and the rebuilt model's FLOPs (counted independently) are that cost.
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import regularizable
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import keras_corpus
from morph_net.testing import reference_cost


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _zero_gammas(model, dead):
  for name, channels in dead.items():
    gamma = model.get_layer(name).gamma
    values = gamma.numpy()
    values[channels] = 0.0
    gamma.assign(values)


def _data(model):
  return np.random.default_rng(0).normal(
      size=(2,) + tuple(model.input_shape[1:])).astype('float32')


def _gamma_flops(model):
  return morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)


def _outputs(model, data):
  outputs = model.predict(data, verbose=0)
  return outputs if isinstance(outputs, list) else [outputs]


def test_keras_ops_model_is_pruned_and_round_trips():
  model = keras_corpus.keras_ops()
  regularizer = _gamma_flops(model)
  assert regularizer.initial_cost == 222928.0
  # Only the classifier's output is kept from regularization.
  assert regularizable.excluded_ops(regularizer.traced).layers == {
      'logits': 'its channels reach a model output'}
  identity = rebuild.rebuild(model, regularizer.alive_counts(),
                             transfer_weights=True)
  data = _data(model)
  np.testing.assert_array_equal(_outputs(model, data)[0],
                                _outputs(identity, data)[0])

  # conv1 and res are added (ops.add): a channel dies where both gammas do.
  _zero_gammas(model, {'conv1_bn': [0, 3], 'res_bn': [0, 3],
                       'left_bn': [1], 'fc_bn': [2, 5, 7]})
  alive = regularizer.alive_counts()
  assert alive == {'conv1': 10, 'res': 10, 'right': 4, 'left': 5, 'fc': 5}
  cost = float(regularizer.cost())
  assert cost == 161400.0
  assert morph_keras.StructureCost(regularizer)(alive) == cost
  assert morph_keras.StructureCost(regularizer)({}) == (
      regularizer.initial_cost)
  rebuilt = rebuild.rebuild(model, alive, transfer_weights=True)
  assert reference_cost.reference_flops(rebuilt) == cost
  assert rebuilt.get_layer('fc').kernel.shape == (9, 5)  # left 5 + right 4
  np.testing.assert_allclose(_outputs(model, data)[0],
                             _outputs(rebuilt, data)[0], atol=1e-6)


def test_detector_head_rebuilds_with_its_outputs_and_cost():
  model = keras_corpus.detector_head()
  regularizer = _gamma_flops(model)
  assert regularizer.initial_cost == 193792.0
  data = _data(model)
  identity = rebuild.rebuild(model, regularizer.alive_counts(),
                             transfer_weights=True)
  for want, got in zip(_outputs(model, data), _outputs(identity, data)):
    np.testing.assert_array_equal(want, got)

  _zero_gammas(model, {'stem_bn': [0, 3, 4], 'down_bn': [1],
                       'head0_bn': [2, 5], 'head1_bn': list(range(7))})
  alive = regularizer.alive_counts()
  assert alive == {'stem': 9, 'down': 15, 'head0': 6, 'head1': 1}
  cost = float(regularizer.cost())
  assert cost == 127776.0
  assert morph_keras.StructureCost(regularizer)(alive) == cost
  rebuilt = rebuild.rebuild(model, alive, transfer_weights=True)
  assert reference_cost.reference_flops(rebuilt) == cost
  for want, got in zip(_outputs(model, data), _outputs(rebuilt, data)):
    assert want.shape == got.shape
    np.testing.assert_allclose(want, got, atol=1e-6)


def test_detector_scale_that_dies_whole_is_refused_clearly():
  model = keras_corpus.detector_head()
  _zero_gammas(model, {'head1_bn': list(range(8))})
  # The scale's removal would leave the concat without an input: by default
  # it keeps its strongest channel and the structure rebuilds.
  kept = _gamma_flops(model).alive_counts()
  assert kept['head1'] == 1
  rebuild.rebuild(model, kept)
  # With min_channels=0 it dies, and rebuild says why it cannot follow.
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3,
      min_channels=0)
  alive = regularizer.alive_counts()
  assert alive['head1'] == 0
  with pytest.raises(errors.StructureError) as raised:
    rebuild.rebuild(model, alive)
  message = str(raised.value)
  assert message.startswith("Layer 'classes' (Concatenate) has inputs that "
                            'vanished'), message
  assert message.endswith(
      'and others that did not; only the Add layer and concatenations '
      'along the channel axis can drop vanished inputs. Keep a nonzero '
      'width for the layers feeding it.'), message


def _small_ops_model():
  """conv -> BN -> ops.relu; conv -> BN; ops.add; x * 2.0; ops.mean;
  Dense: the issue's example."""
  layers = keras.layers
  x = keras.Input((8, 8, 3))
  y = layers.Conv2D(8, 3, padding='same', name='c1')(x)
  y = keras.ops.relu(layers.BatchNormalization(name='bn1')(y))
  r = layers.Conv2D(8, 3, padding='same', name='c2')(y)
  y = keras.ops.add(y, layers.BatchNormalization(name='bn2')(r))
  y = keras.ops.mean(y * 2.0, axis=[1, 2])
  return keras.Model(x, layers.Dense(3, name='logits')(y))


def test_operations_are_traced_in_their_own_name_scopes():
  model = _small_ops_model()
  traced = morph_keras.TracedModel(model)
  scoped = sorted({traced.scope_operation_name(op)
                   for op in traced.forward_ops()} - {None})
  assert scoped == ['add', 'mean', 'multiply', 'relu']


def test_latency_structure_cost_counts_the_operations():
  from morph_net.network_regularizers import latency_regularizer  # pylint: disable=g-import-not-at-top
  model = _small_ops_model()
  regularizer = morph_keras.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer, hardware='V100',
      gamma_threshold=1e-3)
  cost = morph_keras.StructureCost(regularizer)
  assert cost({}) == pytest.approx(regularizer.initial_cost, rel=1e-6)
  _zero_gammas(model, {'bn1': [1, 4], 'bn2': [1, 4, 6]})
  alive = regularizer.alive_counts()
  assert alive == {'c1': 6, 'c2': 6}
  assert cost(alive) == pytest.approx(float(regularizer.cost()), rel=1e-6)
  assert cost(alive) < regularizer.initial_cost
