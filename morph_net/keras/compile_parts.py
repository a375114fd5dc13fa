"""The MorphNet parts of a compiled model, and attaching a regularizer to them.

A model compiled with `ModelRegularizer.wrap_loss` and `.metrics()` holds a
`losses.MorphNetLoss` and `metrics.MorphNetMetric`s. Saved and loaded, they
come back without a regularizer; `attach` gives them one by compiling the
model again.
"""

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.keras import losses
from morph_net.keras import metrics

__all__ = ['attach']

_PARTS = (losses.MorphNetLoss, metrics.MorphNetMetric)


def attach(regularizer, model) -> int:
  """Compiles `model` again with `regularizer` in its MorphNet loss and metrics.

  The compile arguments are the model's own (`model.get_compile_config()`),
  with its optimizer object, so the optimizer state is kept.

  Args:
    regularizer: the `ModelRegularizer` to attach (its `loss()` and
      `cost()` are read).
    model: a Keras model compiled with a `MorphNetLoss`.

  Returns:
    The number of MorphNet losses and metrics attached.

  Raises:
    NotReadyError: if the model is not compiled, or compiled without a
      `MorphNetLoss`.
  """
  arguments = compat.compile_arguments(model)
  attached = []

  def attach_to(obj):
    if isinstance(obj, _PARTS):
      obj.regularizer = regularizer
      attached.append(obj)
    return obj

  arguments = compat.map_compile_objects(arguments or {}, attach_to)
  if not any(isinstance(obj, losses.MorphNetLoss) for obj in attached):
    raise errors.NotReadyError(
        'Model %r is not compiled with a MorphNetLoss (its loss: %r), so '
        'there is nothing to attach the regularizer to. Compile it with '
        'loss=regularizer.wrap_loss(<data loss>) and metrics=[...] + '
        'regularizer.metrics() instead.' %
        (model.name, getattr(model, 'loss', None)))
  arguments['optimizer'] = model.optimizer
  model.compile(**arguments)
  return len(attached)
