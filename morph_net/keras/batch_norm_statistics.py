"""Re-estimating batch-norm moving statistics after the weights moved.

While MorphNet shrinks batch-norm gammas, the layers after them see smaller
and smaller inputs; the moving means and variances, averaged over the last
few hundred steps, lag behind, so a model evaluated with them (inference
mode) scores worse than it trains. The same holds right after `rebuild`
folds removed channels' constants into the next layers. Recomputing the
statistics on training data with the weights fixed (as stochastic weight
averaging does after averaging, Izmailov et al. 2018, "bn_update") removes
the lag:

    recompute_statistics(model, x_train[:2048])
    model.evaluate(x_test, y_test)
"""

from typing import List

import numpy as np

from morph_net import errors
from morph_net.compat import keras as compat

__all__ = ['batch_norm_layers', 'recompute_statistics']

_keras = compat.get_keras()


def batch_norm_layers(model) -> List[object]:
  """Every BatchNormalization layer of `model`, nested models included."""
  found = []
  for layer in model.layers:
    if isinstance(layer, _keras.layers.BatchNormalization):
      found.append(layer)
    elif isinstance(layer, _keras.Model):
      found.extend(batch_norm_layers(layer))
  return found


def recompute_statistics(model, x, batch_size: int = 256) -> int:
  """Sets every batch norm's moving mean and variance to their value on `x`.

  Each batch of `x` runs through the model in training mode with the
  layers' momentum set so that the moving statistics become the running
  average of the batches' statistics (batch i weighs 1 / i); the
  momentum is restored afterwards. No other weight changes (gradients are
  not computed), but layers that behave differently in training mode
  (dropout) run in it during the passes.

  Args:
    model: a built Keras model.
    x: inputs, an array (or a list of arrays for several inputs) with a
      leading batch dimension; about 1,000-5,000 training examples suffice.
    batch_size: examples per forward pass.

  Returns:
    The number of batch-norm layers updated (0: nothing to do).

  Raises:
    InvalidArgumentError: for an empty `x` or batch_size < 1.
  """
  layers = batch_norm_layers(model)
  inputs = x if isinstance(x, (list, tuple)) else [x]
  count = len(inputs[0])
  if count < 1 or int(batch_size) < 1:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `x` or `batch_size` of '
        'recompute_statistics. Expected at least one example and '
        'batch_size >= 1. Received: %d examples, batch_size=%r' %
        (count, batch_size))
  if not layers:
    return 0
  momenta = [layer.momentum for layer in layers]
  try:
    for i, start in enumerate(range(0, count, int(batch_size))):
      # moving = momentum * moving + (1 - momentum) * batch: a running mean
      # of the batches when momentum = i / (i + 1).
      for layer in layers:
        layer.momentum = i / (i + 1.0)
      batch = [np.asarray(t[start:start + int(batch_size)]) for t in inputs]
      model(batch if len(batch) > 1 else batch[0], training=True)
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  return len(layers)
