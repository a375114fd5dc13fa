"""Keras callbacks: learned structure files and TensorBoard scalars.

Under a multi-worker strategy every worker runs the callbacks; only the
chief (`is_chief`) writes files, so workers sharing a directory do not race.
"""

import os
from typing import Optional

import tensorflow as tf

from morph_net.compat import keras as compat
from morph_net.structure import structure_plot

__all__ = ['StructureExportCallback', 'CostSummaryCallback', 'is_chief']

_keras = compat.get_keras()


def is_chief(strategy: Optional[tf.distribute.Strategy] = None) -> bool:
  """Whether this process writes the run's files under `strategy`.

  The chief is the 'chief' task of the cluster, or worker 0 of a cluster
  without one (MultiWorkerMirroredStrategy's convention); a single process
  (no cluster) is its own chief.

  Args:
    strategy: a `tf.distribute` strategy (default: the current one).

  Returns:
    True for the chief and for single-process strategies.
  """
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None)
  if task_type is None or task_type == 'chief':
    return True
  if task_type != 'worker':
    return False  # Parameter servers and evaluators.
  return (resolver.task_id == 0 and
          'chief' not in resolver.cluster_spec().jobs)


def _model_is_chief(model) -> bool:
  return is_chief(getattr(model, 'distribute_strategy', None))


def _step(model) -> int:
  optimizer = getattr(model, 'optimizer', None)
  iterations = getattr(optimizer, 'iterations', None)
  return int(iterations.numpy()) if iterations is not None else 0


class StructureExportCallback(_keras.callbacks.Callback):
  """Writes `<log_dir>/learned_structure/alive_<step>` during training.

  The files hold {layer name: alive channels} (sorted keys, indent 2), every
  `every_n_steps` optimizer steps and at the end of training; the latest copy
  is `learned_structure/alive`. At the end of training it also draws the
  widths at the start and at the end of training to
  `learned_structure/structure.png`. Files are written atomically, and only
  by the chief of a multi-worker run.

  Args:
    model_regularizer: a `morph_net.keras.ModelRegularizer`.
    log_dir: the directory of the run.
    every_n_steps: export period in optimizer steps (None: only at the end).
    plot: whether to write the PNG at the end of training.
  """

  def __init__(self, model_regularizer, log_dir: str,
               every_n_steps: Optional[int] = 1000, plot: bool = True):
    super().__init__()
    self._regularizer = model_regularizer
    self._log_dir = log_dir
    self._every_n_steps = every_n_steps
    self._plot = plot
    self._initial_counts = None
    self.exported_paths = []

  def on_train_begin(self, logs=None):
    if self._initial_counts is None:
      self._initial_counts = self._regularizer.alive_counts()

  def _export(self):
    if not _model_is_chief(self.model):
      return
    path = self._regularizer.save_alive_counts(self._log_dir,
                                               _step(self.model))
    self.exported_paths.append(path)

  def on_train_batch_end(self, batch, logs=None):
    if self._every_n_steps and _step(self.model) % self._every_n_steps == 0:
      self._export()

  def on_train_end(self, logs=None):
    self._export()
    if (self._plot and self._initial_counts and
        _model_is_chief(self.model)):
      structure_plot.plot_structures(
          self._initial_counts, self._regularizer.alive_counts(),
          os.path.join(self._log_dir, 'learned_structure', 'structure.png'),
          title='%s: alive channels' % self._regularizer.name,
          labels=('start of training', 'end of training'))


class CostSummaryCallback(_keras.callbacks.Callback):
  """Writes the cost, term, strength and alive counts to TensorBoard.

  Scalars go through `tf.summary` to `<log_dir>/morph_net`, every
  `every_n_steps` optimizer steps and at the end of each epoch:
  `morph_net/<cost_name>`, `morph_net/regularization_term`,
  `morph_net/strength` and `morph_net/alive/<layer>`. Only the chief of a
  multi-worker run writes.

  Args:
    model_regularizer: a `morph_net.keras.ModelRegularizer`.
    log_dir: TensorBoard log directory.
    every_n_steps: summary period in optimizer steps.
  """

  def __init__(self, model_regularizer, log_dir: str, every_n_steps: int = 100):
    super().__init__()
    self._regularizer = model_regularizer
    self._every_n_steps = every_n_steps
    self._log_dir = os.path.join(log_dir, 'morph_net')
    self._writer = None

  def _write(self):
    if not _model_is_chief(self.model):
      return
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(self._log_dir)
    step = _step(self.model)
    regularizer = self._regularizer
    with self._writer.as_default(step=step):
      tf.summary.scalar('morph_net/' + regularizer.cost_name,
                        regularizer.cost())
      tf.summary.scalar('morph_net/regularization_term', regularizer.term())
      tf.summary.scalar('morph_net/strength', regularizer.strength)
      for name, count in regularizer.alive_counts().items():
        tf.summary.scalar('morph_net/alive/' + name, count)
    self._writer.flush()

  def on_train_batch_end(self, batch, logs=None):
    if self._every_n_steps and _step(self.model) % self._every_n_steps == 0:
      self._write()

  def on_epoch_end(self, epoch, logs=None):
    self._write()
