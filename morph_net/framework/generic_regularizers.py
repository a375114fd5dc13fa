"""Interfaces of op regularizers and network regularizers."""

import abc

import tensorflow as tf

__all__ = ['OpRegularizer', 'NetworkRegularizer', 'dimensions_are_compatible']


class OpRegularizer(abc.ABC):
  """Regularization and liveness of the output channels of one op (or slice).

  `regularization_vector` is a float vector with one entry per channel;
  `alive_vector` is a bool vector of the same length, True for channels that
  would be kept.
  """

  @property
  @abc.abstractmethod
  def regularization_vector(self) -> tf.Tensor:
    """Float vector, one non-negative entry per channel."""

  @property
  @abc.abstractmethod
  def alive_vector(self) -> tf.Tensor:
    """Bool vector, True for channels that are alive."""


class NetworkRegularizer(abc.ABC):
  """A regularizer of a whole network towards a lower resource cost."""

  @abc.abstractmethod
  def get_regularization_term(self, ops=None) -> tf.Tensor:
    """Returns the scalar regularization term (sum over `ops`, or all ops)."""

  @abc.abstractmethod
  def get_cost(self, ops=None) -> tf.Tensor:
    """Returns the resource cost with dead channels removed."""

  @property
  def op_regularizer_manager(self):
    """The OpRegularizerManager that analysed the network."""
    return None

  @property
  def name(self) -> str:
    return ''

  @property
  def cost_name(self) -> str:
    return ''


def dimensions_are_compatible(op_regularizer) -> bool:
  """Whether the regularization and alive vectors can have the same size.

  Args:
    op_regularizer: an OpRegularizer.

  Returns:
    True when both vectors have compatible static shapes (unknown sizes are
    compatible with any size).
  """
  return op_regularizer.regularization_vector.shape.is_compatible_with(
      op_regularizer.alive_vector.shape)
