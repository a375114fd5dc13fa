"""recompute_statistics: moving mean/variance become the data's."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import batch_norm_statistics


def _model():
  inputs = keras.Input((4, 4, 2))
  x = keras.layers.Conv2D(3, 1, use_bias=False, name='conv')(inputs)
  x = keras.layers.BatchNormalization(momentum=0.99, name='bn')(x)
  inner = keras.Sequential([keras.Input((4, 4, 3)),
                            keras.layers.BatchNormalization(name='inner_bn')],
                           name='inner')
  return keras.Model(inputs, inner(x))


def test_statistics_become_the_mean_and_variance_of_the_data():
  model = _model()
  x = np.random.RandomState(0).randn(96, 4, 4, 2).astype('float32') * 3 + 1
  assert [l.name for l in batch_norm_statistics.batch_norm_layers(model)] == [
      'bn', 'inner_bn']
  assert batch_norm_statistics.recompute_statistics(model, x,
                                                    batch_size=32) == 2
  features = keras.ops.convert_to_numpy(model.get_layer('conv')(x))
  bn = model.get_layer('bn')
  np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                             features.mean((0, 1, 2)), rtol=1e-4, atol=1e-4)
  # The average of three equal-size batches' variances.
  variances = np.mean([features[i:i + 32].var((0, 1, 2))
                       for i in (0, 32, 64)], axis=0)
  np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                             variances, rtol=1e-4)
  assert bn.momentum == 0.99  # Restored.
  # The kernel did not move.
  assert model.get_layer('conv').kernel.shape == (1, 1, 2, 3)


def test_empty_data_is_an_error_and_no_batch_norm_is_nothing():
  model = _model()
  with pytest.raises(errors.InvalidArgumentError,
                     match='Expected at least one example and batch_size >= '
                     '1. Received: 0 examples, batch_size=256'):
    batch_norm_statistics.recompute_statistics(model, np.zeros((0, 4, 4, 2)))
  plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  assert batch_norm_statistics.recompute_statistics(plain,
                                                    np.ones((4, 3))) == 0
