"""The Noisy-OR of a group of gates, independent of the tensor library.

A channel shared by K probabilistic gates is open if any gate is, with
probability 1 - prod_i(1 - p_i) (`ProbabilisticGroupingRegularizer`, as in
the original MorphNet). Both engines use `noisy_or`: the graph engine on
`tf.Tensor`s, the layer-level engine (every Keras 3 backend) with
`keras.ops`; this module imports neither.
"""

__all__ = ['noisy_or']


def noisy_or(vectors, probabilities, ops):
  """1 - prod_i(1 - v_i), with the partners' factor of the soft Noisy-OR.

  The value is that of `vectors`; the gradient with respect to v_i is
  prod_{j != i}(1 - p_j) (not prod_{j != i}(1 - v_j), which is 0 when the
  v_j are 0/1 masks and one partner is open).

  Args:
    vectors: list of K >= 1 float [C] tensors (masks or probabilities).
    probabilities: list of K float [C] tensors, the gates' probabilities
      sigmoid(log-odds), or None to use `vectors` (the plain Noisy-OR).
    ops: the tensor namespace, `tensorflow` or `keras.ops` (each has
      `stop_gradient`; products are written out).

  Returns:
    The float [C] group vector.
  """
  closed = 1.0 - vectors[0]
  for vector in vectors[1:]:
    closed = closed * (1.0 - vector)
  value = 1.0 - closed
  if probabilities is None or len(vectors) < 2:
    return value
  surrogate = 0.0
  for i, vector in enumerate(vectors):
    partners = None
    for j, probability in enumerate(probabilities):
      if j != i:
        factor = 1.0 - probability
        partners = factor if partners is None else partners * factor
    surrogate = surrogate + ops.stop_gradient(partners) * vector
  return ops.stop_gradient(value) + (surrogate - ops.stop_gradient(surrogate))
