"""The MorphNet loss: a data loss plus a regularizer's term, as a Keras loss.

    model.compile(optimizer='adam',
                  loss=regularizer.wrap_loss('sparse_categorical_crossentropy'))

`MorphNetLoss` is a registered, serializable Keras loss (package
'morph_net'; Keras 3, or tf_keras with TF_USE_LEGACY_KERAS=1), so a model
compiled with it saves and loads with `model.save` / `load_model` once
`morph_net.keras` is imported. Only the data loss is saved: a regularizer is
a function of a traced graph and of live variables, not a config. A loaded
`MorphNetLoss` therefore has no regularizer; it computes the data loss alone
and logs a warning the first time it is used.
`ModelRegularizer.attach(model)` gives it one again.
"""

import re
from typing import Any, Callable, Optional

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.compat import keras as compat

__all__ = ['MorphNetLoss', 'unwrap']

_keras = compat.get_keras()


@_keras.saving.register_keras_serializable(package='morph_net')
class MorphNetLoss(_keras.losses.Loss):
  """Per example: the data loss plus the regularizer's `loss()`.

  Keras reduces the per-example values over the batch (by default their
  mean), which adds `regularizer.loss()` (strength x term, plus the rescue
  term under a cost target) once per batch.
  With sample weights the term is weighted by the mean sample weight, as
  every per-example value is.

  Args:
    loss: the data loss: a name, a function (y_true, y_pred) -> per-example
      loss, a Keras `Loss` (its per-example `call` is used; its own
      reduction is not) or a serialized loss config.
    regularizer: an object with a `loss()` method returning a scalar (a
      `morph_net.keras.ModelRegularizer`); None after loading a model, when
      the loss is the data loss alone (see the module docstring).
    name: the loss name (default 'morph_net_<data loss name>').
    **kwargs: other arguments of the Keras `Loss` (reduction, dtype ...).

  Raises:
    InvalidArgumentError: if `loss` is not a loss.
  """

  def __init__(self, loss, regularizer=None, name: Optional[str] = None,
               **kwargs):
    data_loss = _keras.losses.get(loss)
    if not callable(data_loss):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `loss` of MorphNetLoss. Expected the '
          'data loss: a loss name, a function (y_true, y_pred) or a Keras '
          'Loss. Received: loss=%r (%s)' % (loss, type(loss).__name__))
    if name is None:
      name = 'morph_net_' + _loss_name(data_loss)
    super().__init__(name=name, **kwargs)
    self._data_loss = data_loss
    self.regularizer = regularizer
    self._warned_detached = False

  @property
  def data_loss(self) -> Any:
    """The wrapped data loss (a Keras `Loss` or a function)."""
    return self._data_loss

  def without_morph_net(self) -> Any:
    """The data loss alone, for a model compiled without MorphNet.

    `morph_net.surgery.rebuild` compiles a rebuilt model with it.
    """
    return self._data_loss

  def call(self, y_true, y_pred):
    """Per-example data loss plus `regularizer.loss()`, shape [batch, ...]."""
    per_example = (self._data_loss.call
                   if isinstance(self._data_loss, _keras.losses.Loss)
                   else self._data_loss)
    data = per_example(y_true, y_pred)
    if self.regularizer is None:
      if not self._warned_detached:
        self._warned_detached = True
        logging.warning(
            "MorphNetLoss '%s' has no regularizer attached (a model loaded "
            'from a file): it is the data loss alone and MorphNet is not '
            'training. Re-attach one with ModelRegularizer(model, ...)'
            '.attach(model), or compile again with loss=regularizer.'
            'wrap_loss(...).', self.name)
      return data
    return data + tf.cast(self.regularizer.loss(), data.dtype)

  def get_config(self):
    """The Keras config: the data loss (serialized) and the Loss arguments.

    The regularizer is not part of it.
    """
    config = super().get_config()
    config['loss'] = _keras.losses.serialize(self._data_loss)
    return config

  @classmethod
  def from_config(cls, config):
    """A detached MorphNetLoss (no regularizer) from `get_config()`."""
    config = dict(config)
    loss = _keras.losses.deserialize(config.pop('loss'))
    return cls(loss, **config)


def _loss_name(loss: Callable) -> str:
  """The name of a loss function or Loss, usable as a TF scope ('<lambda>'
  becomes 'lambda')."""
  name = getattr(loss, '__name__', None) or getattr(loss, 'name', None)
  return re.sub(r'[^A-Za-z0-9_.-]', '', name or '') or 'loss'


def unwrap(loss) -> Any:
  """The data loss of a `MorphNetLoss`; any other loss unchanged."""
  return loss.data_loss if isinstance(loss, MorphNetLoss) else loss
