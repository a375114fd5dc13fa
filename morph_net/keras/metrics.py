"""MorphNet metrics: the regularization loss and the cost in `fit`'s logs.

    model.compile(..., metrics=['accuracy'] + regularizer.metrics())

`MorphNetMetric` is a registered, serializable Keras metric (package
'morph_net'), the mean over an epoch of one quantity of a regularizer:
'regularization_loss' (strength x term) or 'cost' (e.g. FLOPs with dead
channels removed). Like `losses.MorphNetLoss`, it saves without its
regularizer: after loading a model it reports NaN (and logs a warning once)
until `ModelRegularizer.attach(model)` gives it one again.
"""

from typing import Optional

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.compat import keras as compat

__all__ = ['MorphNetMetric', 'QUANTITIES']

_keras = compat.get_keras()

# The regularizer method each quantity reads.
QUANTITIES = {'regularization_loss': 'loss', 'cost': 'cost'}


@_keras.saving.register_keras_serializable(package='morph_net')
class MorphNetMetric(_keras.metrics.Mean):
  """The mean of a regularizer's regularization loss or cost per batch.

  The value does not depend on the batch: each training step adds the
  regularizer's current value, so the epoch's result is the average over
  its steps (the progress bar's `flops` is therefore an epoch average,
  while `regularizer.cost()` after the epoch is the final value).

  Args:
    quantity: 'regularization_loss' (`regularizer.loss()`, strength x term)
      or 'cost' (`regularizer.cost()`).
    regularizer: a `morph_net.keras.ModelRegularizer`; None after loading,
      when the metric reports NaN.
    name: the metric name (default: `quantity`).
    dtype: the metric's dtype.

  Raises:
    InvalidArgumentError: for an unknown `quantity`.
  """

  def __init__(self, quantity: str, regularizer=None,
               name: Optional[str] = None, dtype=None):
    if quantity not in QUANTITIES:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `quantity` of MorphNetMetric. Expected '
          'one of %s. Received: quantity=%r' % (sorted(QUANTITIES), quantity))
    super().__init__(name=name or quantity, dtype=dtype)
    self._quantity = quantity
    self._regularizer = regularizer
    self._warned_detached = False

  @property
  def quantity(self) -> str:
    return self._quantity

  @property
  def regularizer(self):
    """The regularizer read (None: detached)."""
    return self._regularizer

  @regularizer.setter
  def regularizer(self, regularizer):
    self._regularizer = regularizer

  def without_morph_net(self) -> None:
    """Nothing: a model compiled without MorphNet drops this metric.

    `morph_net.surgery.rebuild` compiles a rebuilt model without it.
    """
    return None

  def _value(self) -> tf.Tensor:
    if self._regularizer is None:
      if not self._warned_detached:
        self._warned_detached = True
        logging.warning(
            "MorphNetMetric '%s' has no regularizer attached (a model loaded "
            'from a file): it reports NaN. Re-attach one with '
            'ModelRegularizer(model, ...).attach(model).', self.name)
      return tf.constant(float('nan'), tf.float32)
    return getattr(self._regularizer, QUANTITIES[self._quantity])()

  def update_state(self, y_true=None, y_pred=None, sample_weight=None):
    """Adds the regularizer's current value; the arguments are ignored."""
    del y_true, y_pred, sample_weight
    return super().update_state(self._value())

  def get_config(self):
    """The Keras config: quantity, name and dtype (not the regularizer)."""
    config = super().get_config()
    config['quantity'] = self._quantity
    return config
