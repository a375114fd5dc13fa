"""Only the chief of a multi-worker run writes: morph_net.keras.is_chief and
the callbacks, with cluster resolvers of each kind of task."""

import json
import types

import keras
import pytest
import tensorflow as tf

from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer


def _strategy(task_type, task_id, jobs):
  spec = tf.train.ClusterSpec({job: ['localhost:%d' % (2000 + i)
                                     for i in range(n)]
                               for job, n in jobs.items()})
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      spec, task_type=task_type, task_id=task_id)
  return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize('task_type,task_id,jobs,chief', [
    ('worker', 0, {'worker': 2}, True),
    ('worker', 1, {'worker': 2}, False),
    ('chief', 0, {'chief': 1, 'worker': 2}, True),
    ('worker', 0, {'chief': 1, 'worker': 2}, False),
    ('ps', 0, {'chief': 1, 'worker': 1, 'ps': 1}, False),
    ('evaluator', 0, {'worker': 1, 'evaluator': 1}, False),
])
def test_is_chief_by_task(task_type, task_id, jobs, chief):
  assert morph_keras.is_chief(_strategy(task_type, task_id, jobs)) is chief


def test_single_process_strategies_are_chief():
  assert morph_keras.is_chief()
  assert morph_keras.is_chief(tf.distribute.get_strategy())
  assert morph_keras.is_chief(tf.distribute.OneDeviceStrategy('/cpu:0'))


def test_callbacks_of_a_non_chief_worker_write_nothing(tmp_path):
  inputs = keras.Input((4, 4, 3))
  x = keras.layers.Conv2D(2, 3, use_bias=False, name='conv')(inputs)
  x = keras.layers.BatchNormalization(name='bn')(x)
  model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  worker = types.SimpleNamespace(
      distribute_strategy=_strategy('worker', 1, {'worker': 2}),
      optimizer=types.SimpleNamespace(iterations=tf.Variable(5)))
  export = morph_keras.StructureExportCallback(regularizer, str(tmp_path),
                                               every_n_steps=5)
  summary = morph_keras.CostSummaryCallback(regularizer, str(tmp_path),
                                            every_n_steps=5)
  for callback in (export, summary):
    callback.set_model(worker)
    callback.on_train_begin()
    callback.on_train_batch_end(4)
    callback.on_epoch_end(0)
    callback.on_train_end()
  assert export.exported_paths == []
  assert not list(tmp_path.iterdir())
  # The chief (worker 0) writes the same calls' files.
  chief = types.SimpleNamespace(
      distribute_strategy=_strategy('worker', 0, {'worker': 2}),
      optimizer=worker.optimizer)
  export.set_model(chief)
  export.on_train_end()
  assert [p.split('/')[-1] for p in export.exported_paths] == ['alive_5']
  assert json.loads(
      (tmp_path / 'learned_structure' / 'alive').read_text()) == {'conv': 2}
