"""Element-wise math whose gradient stays finite where the plain op's is not.

The regularizers take square roots of sums of squares (group lasso norms, L2
grouping). The derivative of sqrt at 0 is infinite, so a group whose weights
are exactly zero (a pruned filter, a zero-initialized Dense) would turn the
whole gradient into NaN after one step. `safe_sqrt` has the exact value of
`tf.sqrt` and a gradient of 0 where its argument is 0 (a subgradient of the
L2 norm at 0).
"""

import tensorflow as tf

__all__ = ['safe_sqrt']


def safe_sqrt(x: tf.Tensor, name: str = 'safe_sqrt') -> tf.Tensor:
  """sqrt(x) for x >= 0, with a zero gradient at x == 0.

  Written as where(x > 0, sqrt(where(x > 0, x, 1)), 0): the inner `where`
  keeps the untaken branch finite, so no inf * 0 reaches the gradient. Only
  standard ops, so the graph can be pruned and copied (a custom gradient
  closure could not).

  Args:
    x: a float tensor of non-negative values (any shape).
    name: name of the returned op.

  Returns:
    A tensor of x's shape and dtype equal to tf.sqrt(x).
  """
  x = tf.convert_to_tensor(x)
  zero = tf.constant(0, x.dtype)
  positive = x > zero
  root = tf.sqrt(tf.where(positive, x, tf.constant(1, x.dtype)))
  return tf.where(positive, root, zero, name=name)
