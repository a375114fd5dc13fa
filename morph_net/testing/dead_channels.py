"""Seeded random dead-channel patterns for Keras models.

A differential test needs channels that are dead the way training leaves
them: `zero_gammas` zeroes batch-norm scales (what Gamma regularizers read),
`zero_filters` zeroes output filters of conv and dense kernels (what
GroupLasso regularizers read). Both are seeded, change the model's variables
in place, and never kill every channel of a layer unless asked to.
"""

from typing import Dict

import keras
import numpy as np

__all__ = ['zero_gammas', 'zero_filters']

L = keras.layers

# Layers whose filters GroupLasso reads, and the kernel axis of the filters.
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_FILTER_LAYERS = (L.Conv1D, L.Conv2D, L.Conv3D, L.SeparableConv1D,
                  L.SeparableConv2D, L.Dense) + _TRANSPOSED


def _layers(model):
  return model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access


def _choose(rng, size, max_fraction, allow_all):
  """Indices of the channels to kill (never all of them unless allow_all)."""
  limit = size if allow_all else size - 1
  count = int(rng.integers(0, max(0, min(limit, int(np.ceil(
      size * max_fraction)))) + 1))
  return np.sort(rng.choice(size, size=count, replace=False))


def zero_gammas(model, seed: int, max_fraction: float = 0.6,
                layer_probability: float = 0.8,
                allow_all: bool = False) -> Dict[str, np.ndarray]:
  """Zeroes the gammas (and betas) of random channels of batch norms.

  Args:
    model: a built Keras model (nested models are entered).
    seed: the random seed.
    max_fraction: at most this fraction of a layer's channels dies.
    layer_probability: chance that a batch norm loses any channel.
    allow_all: allow every channel of a layer to die.

  Returns:
    {batch norm layer name: indices of the zeroed channels}.
  """
  rng = np.random.default_rng(seed)
  killed = {}
  for layer in _layers(model):
    if not isinstance(layer, L.BatchNormalization) or layer.gamma is None:
      continue
    if rng.random() >= layer_probability:
      continue
    dead = _choose(rng, int(layer.gamma.shape[0]), max_fraction, allow_all)
    gamma = layer.gamma.numpy()
    gamma[dead] = 0.0
    layer.gamma.assign(gamma)
    if layer.beta is not None:
      beta = layer.beta.numpy()
      beta[dead] = 0.0
      layer.beta.assign(beta)
    killed[layer.name] = dead
  return killed


def zero_filters(model, seed: int, max_fraction: float = 0.6,
                 layer_probability: float = 0.8,
                 allow_all: bool = False) -> Dict[str, np.ndarray]:
  """Zeroes the kernels (and biases) of random output channels.

  Covers Conv1D/2D/3D, their transposed versions, the pointwise kernel of
  separable convs and Dense layers.

  Args:
    model: a built Keras model (nested models are entered).
    seed: the random seed.
    max_fraction: at most this fraction of a layer's filters dies.
    layer_probability: chance that a layer loses any filter.
    allow_all: allow every filter of a layer to die.

  Returns:
    {layer name: indices of the zeroed output channels}.
  """
  rng = np.random.default_rng(seed)
  killed = {}
  for layer in _layers(model):
    if not isinstance(layer, _FILTER_LAYERS):
      continue
    kernel = getattr(layer, 'pointwise_kernel', None)
    if kernel is None:  # A Keras variable has no truth value: test for None.
      kernel = layer.kernel
    axis = -2 if isinstance(layer, _TRANSPOSED) else -1
    if rng.random() >= layer_probability:
      continue
    dead = _choose(rng, int(kernel.shape[axis]), max_fraction, allow_all)
    values = np.moveaxis(kernel.numpy(), axis, -1)
    values[..., dead] = 0.0
    kernel.assign(np.moveaxis(values, -1, axis))
    bias = getattr(layer, 'bias', None)
    if bias is not None:
      bias_values = bias.numpy()
      bias_values[dead] = 0.0
      bias.assign(bias_values)
    killed[layer.name] = dead
  return killed
