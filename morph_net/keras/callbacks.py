"""Keras callbacks: learned structure files and TensorBoard scalars.

Under a multi-worker strategy every worker runs the callbacks; only the
chief (`is_chief`) writes files, so workers sharing a directory do not race.

`StructureExportCallback` and `is_chief` work on every Keras backend (on
JAX and PyTorch with the layer-level engine, without TensorFlow);
`CostSummaryCallback` writes through `tf.summary` and needs TensorFlow.
"""

import os
from typing import Optional

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.structure import structure_plot

__all__ = ['StructureExportCallback', 'CostSummaryCallback', 'is_chief']

_keras = compat.get_keras()


def _on_tensorflow() -> bool:
  return compat.use_legacy_keras() or _keras.backend.backend() == 'tensorflow'


def is_chief(strategy=None) -> bool:
  """Whether this process writes the run's files under `strategy`.

  On TensorFlow, the chief is the 'chief' task of the cluster, or worker 0
  of a cluster without one (MultiWorkerMirroredStrategy's convention); a
  single process (no cluster) is its own chief. On JAX it is process 0 of
  the processes `keras.distribution.initialize` started
  (`jax.process_index()`); on PyTorch, process 0 of an initialized
  `torch.distributed` group, else the one process.

  Args:
    strategy: a `tf.distribute` strategy (default: the current one); not
      used on other backends.

  Returns:
    True for the chief and for single-process runs.
  """
  if not _on_tensorflow():
    return _process_index() == 0
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  strategy = strategy or tf.distribute.get_strategy()
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None)
  if task_type is None or task_type == 'chief':
    return True
  if task_type != 'worker':
    return False  # Parameter servers and evaluators.
  return (resolver.task_id == 0 and
          'chief' not in resolver.cluster_spec().jobs)


def _process_index() -> int:
  """This process's index on the JAX or PyTorch backend (0: one process)."""
  backend = _keras.backend.backend()
  if backend == 'jax':
    import jax  # pylint: disable=g-import-not-at-top
    return int(jax.process_index())
  if backend == 'torch':
    import torch.distributed  # pylint: disable=g-import-not-at-top
    if torch.distributed.is_available() and (
        torch.distributed.is_initialized()):
      return int(torch.distributed.get_rank())
  return 0


def _model_is_chief(model) -> bool:
  return is_chief(getattr(model, 'distribute_strategy', None))


def _step(model) -> int:
  """The optimizer's step count. Inside a JAX `fit` the optimizer's
  variables live in the loop's state (`model._jax_state`) until synced:
  the count is read there, without syncing every variable."""
  optimizer = getattr(model, 'optimizer', None)
  iterations = getattr(optimizer, 'iterations', None)
  if iterations is None:
    return 0
  state = getattr(model, '_jax_state', None)
  if state and not getattr(model, '_jax_state_synced', True):
    values = state.get('optimizer_variables') or ()
    for variable, value in zip(optimizer.variables, values):
      if variable is iterations:
        return int(value)
  return int(iterations.numpy())


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
    if not _on_tensorflow():
      raise errors.MissingDependencyError(
          'CostSummaryCallback writes TensorBoard scalars with tf.summary, '
          'which needs TensorFlow, and the Keras backend is %r. On this '
          'backend compile with metrics=regularizer.metrics() (the cost and '
          'the regularization loss in the logs and the progress bar) and '
          'write the structure with StructureExportCallback; or use '
          'KERAS_BACKEND=tensorflow.' % _keras.backend.backend())
    super().__init__()
    self._regularizer = model_regularizer
    self._every_n_steps = every_n_steps
    self._log_dir = os.path.join(log_dir, 'morph_net')
    self._writer = None

  def _write(self):
    if not _model_is_chief(self.model):
      return
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
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
