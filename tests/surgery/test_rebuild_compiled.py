"""rebuild and expansion of a model compiled with MorphNet's loss and metrics
(the state right after training)."""

import keras
import numpy as np
import pytest

from morph_net import keras as morph_keras
from morph_net.keras import expansion
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm

_ALIVE = tm.ALIVE_RESIDUAL


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _trained_with_morph_net():
  model = tm.residual_model()
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3,
      strength=1e-7)
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=regularizer.wrap_loss(
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True)),
                metrics=['accuracy'] + regularizer.metrics())
  rng = np.random.RandomState(0)
  model.fit(rng.rand(8, 16, 16, 3), np.arange(8) % 5, batch_size=8,
            verbose=0)
  return model, regularizer


def test_rebuilt_model_is_compiled_without_morph_net():
  model, regularizer = _trained_with_morph_net()
  small = rebuild.rebuild(model, _ALIVE, transfer_weights=True)
  assert tm.hand_flops(small) == 294854
  assert type(small.loss) is keras.losses.SparseCategoricalCrossentropy
  config = small.get_compile_config()
  assert config['metrics'] == ['accuracy']
  assert config['optimizer']['class_name'] == 'Adam'
  assert small.optimizer is not model.optimizer
  assert int(small.optimizer.iterations.numpy()) == 0
  history = small.fit(np.zeros((4, 16, 16, 3)), np.zeros(4), verbose=0)
  assert sorted(history.history) == ['accuracy', 'loss']
  # The trained model keeps its MorphNet loss and metrics.
  assert model.loss.regularizer is regularizer
  assert [m['config']['name'] for m in
          model.get_compile_config()['metrics'][1:]] == [
              'morph_net_loss', 'flops']


def test_compile_without_morph_net_leaves_other_models_alone():
  plain = tm.residual_model()
  assert not rebuild.compile_without_morph_net(plain)
  assert not plain.compiled
  plain.compile(optimizer='sgd', loss='mse', metrics=['mae'])
  optimizer = plain.optimizer
  assert not rebuild.compile_without_morph_net(plain)
  assert plain.optimizer is optimizer


def test_expansion_of_a_compiled_model():
  model, _ = _trained_with_morph_net()
  cost = morph_keras.StructureCost(model)
  new, multiplier, flops = expansion.expand_to_cost(cost, _ALIVE, cost({}))
  assert multiplier > 1.0
  assert abs(flops - cost({})) <= 0.01 * cost({})
  assert tm.hand_flops(rebuild.rebuild(model, new)) == flops
