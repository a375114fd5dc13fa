"""One MorphNet `fit` step in two JAX processes (keras.distribution).

Run twice by tests/keras/test_layer_regularizer.py, as
`layer_multi_process_check.py <process id> <port>`, on one machine: the two
processes join with `keras.distribution.initialize` (one CPU device each),
train under `DataParallel` over both devices, each feeding its own half of
the batch, and must end with the gammas one process gets
(`test_layer_regularizer.expected_gammas_after_one_step`). Prints
'process <id> of <n>, devices <d> gammas ok' on success.
"""

import os
import sys

import jax
import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_layer_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.keras import layer_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.testing import layer_models  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(process_id: int, port: int):
  # Collectives between CPU processes.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  keras.distribution.initialize(job_addresses='localhost:%d' % port,
                                num_processes=2, process_id=process_id)
  devices = keras.distribution.list_devices('cpu')
  # Each process feeds its own shard of the data.
  keras.distribution.set_distribution(keras.distribution.DataParallel(
      devices=devices, auto_shard_dataset=False))
  keras.utils.set_random_seed(0)
  model = layer_models.residual_cnn()
  regularizer = layer_regularizer.LayerRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=1e-3, strength=1e-4)
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                loss=regularizer.wrap_loss(
                    lambda y_true, y_pred: keras.ops.zeros_like(
                        y_pred[:, 0])))
  # This process's half of a global batch of 4.
  x = np.full((2, 8, 8, 3), 1.0 + process_id, np.float32)
  model.fit(x, np.zeros((2, 4), np.float32), batch_size=2, epochs=1,
            verbose=0)
  for name, want in test_layer_regularizer.expected_gammas_after_one_step(
      1e-4).items():
    gamma = keras.ops.convert_to_numpy(model.get_layer(name).gamma)
    np.testing.assert_allclose(gamma, np.full([gamma.size], want),
                               rtol=1e-6)
  print('process %d of %d, devices %d gammas ok' % (
      jax.process_index(), jax.process_count(), len(devices)))


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]))
