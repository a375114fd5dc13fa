"""Training with model.fit, with or without a MorphNet regularizer."""

import json
import sys
import time
from typing import Optional

import gin
import keras

from morph_net import keras as morph_keras

__all__ = ['train', 'make_optimizer', 'evaluate']


@gin.configurable
def make_optimizer(steps: int, learning_rate: float = 5e-3,
                   schedule: str = 'cosine', optimizer: str = 'adam',
                   warmup_fraction: float = 0.0,
                   decay_boundaries=(0.5, 0.75), decay_factor: float = 0.1,
                   momentum: float = 0.9):
  """An optimizer with a learning-rate schedule over `steps` steps.

  Args:
    steps: total training steps.
    learning_rate: the peak learning rate.
    schedule: 'constant', 'cosine' (decay to 0, optional linear warmup) or
      'step' (times decay_factor at each fraction of decay_boundaries).
    optimizer: 'adam' or 'sgd' (with Nesterov momentum).
    warmup_fraction: fraction of steps of linear warmup for 'cosine'.
    decay_boundaries: fractions of the steps where 'step' decays.
    decay_factor: the 'step' decay factor.
    momentum: SGD momentum.

  Returns:
    A keras optimizer.
  """
  steps = max(int(steps), 1)
  if schedule == 'constant':
    lr = learning_rate
  elif schedule == 'cosine':
    warmup = int(warmup_fraction * steps)
    if warmup:
      lr = keras.optimizers.schedules.CosineDecay(
          0.0, steps - warmup, warmup_target=learning_rate,
          warmup_steps=warmup)
    else:
      lr = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
  elif schedule == 'step':
    boundaries = [int(b * steps) for b in decay_boundaries]
    values = [learning_rate * decay_factor ** i
              for i in range(len(boundaries) + 1)]
    lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
  else:
    raise ValueError('Invalid value for argument `schedule`. Expected one of '
                     "'constant', 'cosine', 'step'. Received: schedule=%r" %
                     schedule)
  if optimizer == 'adam':
    return keras.optimizers.Adam(lr)
  if optimizer == 'sgd':
    return keras.optimizers.SGD(lr, momentum=momentum, nesterov=True)
  raise ValueError("Invalid value for argument `optimizer`. Expected 'adam' "
                   "or 'sgd'. Received: optimizer=%r" % optimizer)


class ProgressCallback(keras.callbacks.Callback):
  """Prints one line per epoch (and the MorphNet cost when regularized)."""

  def __init__(self, label, regularizer=None, epochs=None):
    super().__init__()
    self._label = label
    self._regularizer = regularizer
    self._epochs = epochs
    self._start = None

  def on_train_begin(self, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = logs or {}
    parts = ['%s epoch %d/%s' % (self._label, epoch + 1, self._epochs),
             '%.0fs' % (time.time() - self._start)]
    parts += ['%s=%.4f' % (k, v) for k, v in sorted(logs.items())
              if k in ('loss', 'accuracy', 'morph_net_loss')]
    if self._regularizer is not None:
      reg = self._regularizer
      cost = float(reg.cost())
      parts.append('%s=%.4g (%.1f%% of initial)' % (
          reg.cost_name, cost, 100.0 * cost / reg.initial_cost))
      parts.append('alive=%s' % json.dumps(reg.alive_counts(),
                                            sort_keys=True))
    print('  '.join(parts))
    sys.stdout.flush()


@gin.configurable
def train(model, data, log_dir: str, regularizer=None, epochs: int = 8,
          batch_size: int = 128, export_every_n_steps: Optional[int] = 100,
          label: str = 'train'):
  """Compiles and fits `model` on `data`; returns the final test metrics.

  Scope it in gin (`shrink/train.epochs`, `retrain/train.epochs`); the
  optimizer comes from `make_optimizer` (same scopes).

  Args:
    model: a Keras model with logits output.
    data: a `data.Data`.
    log_dir: TensorBoard logs (and, with a regularizer, learned_structure/).
    regularizer: optional `morph_net.keras.ModelRegularizer` of `model`.
    epochs: training epochs.
    batch_size: batch size.
    export_every_n_steps: structure export period with a regularizer.
    label: prefix of the progress lines.

  Returns:
    {'test_accuracy', 'test_loss', 'train_seconds', 'epochs', 'steps'}.
  """
  steps_per_epoch = -(-len(data.x_train) // batch_size)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  metrics = ['accuracy']
  callbacks = [ProgressCallback(label, regularizer, epochs),
               keras.callbacks.TensorBoard(log_dir, write_graph=False,
                                           profile_batch=0)]
  if regularizer is not None:
    loss = regularizer.wrap_loss(loss)
    metrics += regularizer.metrics()
    callbacks += [
        morph_keras.StructureExportCallback(regularizer, log_dir,
                                            export_every_n_steps),
        morph_keras.CostSummaryCallback(regularizer, log_dir,
                                        export_every_n_steps or 100),
    ]
  model.compile(optimizer=make_optimizer(steps_per_epoch * epochs),
                loss=loss, metrics=metrics)
  start = time.time()
  model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs,
            shuffle=True, callbacks=callbacks, verbose=0)
  seconds = time.time() - start
  result = evaluate(model, data)
  result.update(train_seconds=seconds, epochs=epochs,
                steps=steps_per_epoch * epochs)
  print('%s done in %.0fs: test accuracy %.4f' % (label, seconds,
                                                  result['test_accuracy']))
  sys.stdout.flush()
  return result


def evaluate(model, data, batch_size: int = 500):
  """{'test_accuracy', 'test_loss'} of `model` on the test split."""
  # A plain compile: the MorphNet loss term is not part of the test loss.
  model.compile(loss=keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), metrics=['accuracy'])
  values = model.evaluate(data.x_test, data.y_test, batch_size=batch_size,
                          verbose=0, return_dict=True)
  return {'test_accuracy': float(values['accuracy']),
          'test_loss': float(values['loss'])}
