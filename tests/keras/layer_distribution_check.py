"""One MorphNet `fit` step under keras.distribution.DataParallel (JAX).

Run by tests/keras/test_layer_regularizer.py in a fresh interpreter with
XLA_FLAGS=--xla_force_host_platform_device_count=2, so that JAX sees two
CPU devices. The batch is split over them; the gammas after the step must
be the ones one device gets (the term's gradient, see
`test_layer_regularizer.expected_gammas_after_one_step`). Prints
'devices <n> gammas ok' on success.
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_layer_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.keras import layer_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.testing import layer_models  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  devices = keras.distribution.list_devices('cpu')
  keras.distribution.set_distribution(
      keras.distribution.DataParallel(devices=devices))
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=1e-3, strength=1e-4)
  test_layer_regularizer._fit_one_step(model, regularizer)  # pylint: disable=protected-access
  for name, want in test_layer_regularizer.expected_gammas_after_one_step(
      1e-4).items():
    gamma = keras.ops.convert_to_numpy(model.get_layer(name).gamma)
    np.testing.assert_allclose(gamma, np.full([gamma.size], want),
                               rtol=1e-6)
  print('devices %d gammas ok' % len(devices))


if __name__ == '__main__':
  main()
