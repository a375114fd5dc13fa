"""The strength relative to the initial cost, shared by both engines.

No TensorFlow import: the layer-level engine (`layer_regularizer`, every
Keras 3 backend) and the graph engine (`model_regularizer`) both use it.
"""

from morph_net import errors

__all__ = ['set_relative_to_cost']


def set_relative_to_cost(regularizer, multiplier: float) -> float:
  """Sets `regularizer`'s strength to multiplier / its initial cost.

  Args:
    regularizer: an object with `initial_cost`, `cost_name` and
      `set_strength` (either engine's ModelRegularizer).
    multiplier: the strength times the initial cost.

  Returns:
    The strength set.

  Raises:
    InvalidArgumentError: when the initial cost is not positive.
  """
  cost = regularizer.initial_cost
  if cost <= 0:
    raise errors.InvalidArgumentError(
        'The initial %s is %r; cannot scale the strength by it.' %
        (regularizer.cost_name, cost))
  strength = float(multiplier) / cost
  regularizer.set_strength(strength)
  return strength
