"""GammaL1Regularizer: |gamma| of a batch norm scale; alive if above a threshold.

The vectors are built on first use. A network has one such regularizer per
batch norm (155 in ResNet-152), and three graph ops each (|gamma|, the
threshold, the comparison) made up a third of the analysis time, so the
OpRegularizerManager builds all of them together with `build_together`:
the scales are concatenated, |.| and the threshold comparison are applied
once, and the results are split back into one vector per regularizer (a
fixed number of ops for the whole network). The values and gradients are
those of building each regularizer on its own.
"""

from typing import List, Sequence

import numpy as np
import tensorflow as tf

from morph_net.framework import generic_regularizers

__all__ = ['GammaL1Regularizer']


class GammaL1Regularizer(generic_regularizers.OpRegularizer):
  """Regularization vector |gamma|; alive vector |gamma| > gamma_threshold.

  Args:
    gamma: the batch norm scale vector (a tensor reading the variable).
    gamma_threshold: channels with |gamma| at or below it are dead.
  """

  def __init__(self, gamma: tf.Tensor, gamma_threshold: float):
    self._gamma = tf.cast(gamma, tf.float32)
    self._gamma_threshold = gamma_threshold
    self._vectors = None  # (regularization vector, alive vector) once built.
    if not tf.is_symbolic_tensor(self._gamma):
      self._vectors = self._build()  # Eagerly, under the caller's tape.

  @property
  def regularization_vector(self):
    return self._built_vectors()[0]

  @property
  def alive_vector(self):
    return self._built_vectors()[1]

  def _built_vectors(self):
    if self._vectors is None:
      with self._gamma.graph.as_default():
        self._vectors = self._build()
    return self._vectors

  def _build(self):
    abs_gamma = tf.abs(self._gamma)
    return abs_gamma, abs_gamma > self._gamma_threshold

  @classmethod
  def build_together(cls, regularizers: Sequence[
      generic_regularizers.OpRegularizer]) -> None:
    """Builds the vectors of the GammaL1Regularizers among `regularizers`.

    Those of one graph whose gamma has a static size and is outside TF1
    control flow (a cond or while loop) share one |.| and one comparison;
    the others are built on their own when first used. Other regularizer
    types are left alone.

    Args:
      regularizers: op regularizers of any types.
    """
    batches = {}  # graph -> [GammaL1Regularizer]
    for regularizer in regularizers:
      if (isinstance(regularizer, cls) and regularizer._vectors is None and
          regularizer._can_batch()):
        batches.setdefault(regularizer._gamma.graph, []).append(regularizer)
    for graph, batch in batches.items():
      if len(batch) > 1:
        with graph.as_default():
          cls._build_batch(batch)

  def _can_batch(self) -> bool:
    gamma = self._gamma
    if not tf.is_symbolic_tensor(gamma) or gamma.shape.rank != 1:
      return False
    if tf.compat.dimension_value(gamma.shape[0]) is None:
      return False
    return gamma.op._get_control_flow_context() is None  # pylint: disable=protected-access

  @staticmethod
  def _build_batch(batch: List['GammaL1Regularizer']) -> None:
    """Builds the vectors of `batch` (one graph, static sizes) with one |.|."""
    sizes = [tf.compat.dimension_value(r._gamma.shape[0]) for r in batch]
    abs_gammas = tf.abs(tf.concat([r._gamma for r in batch], 0))
    thresholds = {r._gamma_threshold for r in batch}
    if len(thresholds) == 1:
      threshold = thresholds.pop()
    else:  # One threshold per channel.
      threshold = np.repeat(
          np.array([r._gamma_threshold for r in batch], np.float32), sizes)
    alive = abs_gammas > threshold
    for regularizer, abs_gamma, alive_vector in zip(
        batch, tf.split(abs_gammas, sizes), tf.split(alive, sizes)):
      regularizer._vectors = (abs_gamma, alive_vector)

