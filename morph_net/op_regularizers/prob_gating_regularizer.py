"""ProbGatingRegularizer: regularization and liveness of probabilistic gates."""

import tensorflow as tf

from morph_net import errors
from morph_net.framework import generic_regularizers

__all__ = ['ProbGatingRegularizer']


class ProbGatingRegularizer(generic_regularizers.OpRegularizer):
  """Regularizes the gate mask or the gate probability sigmoid(logits).

  Args:
    logits: float vector [C], the log-odds of the gates.
    mask: float vector [C], the mask the gates apply (a relaxed sample in a
      training graph; the deterministic mask in an inference graph).
    regularize_on_mask: regularization vector is the mask (True) or the
      probability sigmoid(logits) (False).
    alive_threshold: a channel is alive when its alive source (mask or
      probability) is at least this (`>=`, as in the original library).
    mask_as_alive_vector: threshold the mask (True) or the probability.

  Raises:
    InvalidArgumentError: when logits and mask are not vectors of the same size.
  """

  def __init__(self, logits: tf.Tensor, mask: tf.Tensor,
               regularize_on_mask: bool = True,
               alive_threshold: float = 0.1,
               mask_as_alive_vector: bool = True):
    logits = tf.cast(logits, tf.float32)
    mask = tf.cast(mask, tf.float32)
    if logits.shape.rank != 1 or not logits.shape.is_compatible_with(
        mask.shape):
      raise errors.InvalidArgumentError(
          'Invalid value for arguments `logits` and `mask`. Expected float '
          'vectors of the same size. Received: logits shape=%s, mask shape=%s'
          % (logits.shape, mask.shape))
    self._logits = logits
    self._mask = mask
    self._probability = tf.sigmoid(logits)
    self._regularization_vector = mask if regularize_on_mask else (
        self._probability)
    alive_source = mask if mask_as_alive_vector else self._probability
    self._alive_vector = alive_source >= alive_threshold

  @property
  def is_probabilistic(self) -> bool:
    """True: the vectors are probabilities, see ProbabilisticGroupingRegularizer."""
    return True

  @property
  def logits(self):
    return self._logits

  @property
  def mask(self):
    return self._mask

  @property
  def probability(self):
    return self._probability

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._alive_vector
