"""GroupLassoRegularizer built alone and built together with others."""

import numpy as np
import tensorflow as tf

from morph_net.framework import manager_util
from morph_net.op_regularizers import group_lasso_regularizer

# A conv kernel [1, 2, 2, 3] with a zero filter, a dense kernel [2, 2] and
# a conv kernel [2, 1, 1, 2].
_KERNELS = (
    np.array([[[[1.0, 0.0, -2.0], [3.0, 0.0, 0.5]],
               [[-1.0, 0.0, 0.25], [2.0, 0.0, -4.0]]]], np.float32),
    np.array([[0.001, -3.0], [0.002, 1.0]], np.float32),
    np.array([[[[0.5, -0.1]]], [[[-0.5, 0.2]]]], np.float32),
)
_REDUCE_DIMS = ([0, 1, 2], [0], [0, 1, 2])


class GroupLassoTogetherTest(tf.test.TestCase):

  def _run(self, together, l1_fractions, threshold=0.01):
    """(vectors, alive vectors, gradients) as numpy; ops the build added."""
    with tf.Graph().as_default() as graph:
      variables = [tf.compat.v1.Variable(k, use_resource=True)
                   for k in _KERNELS]
      regularizers = [
          group_lasso_regularizer.GroupLassoRegularizer(
              v.read_value(), dims, threshold, l1_fraction=f)
          for v, dims, f in zip(variables, _REDUCE_DIMS, l1_fractions)]
      before = len(graph.get_operations())
      if together:
        manager_util.build_together(regularizers)
      else:
        for r in regularizers:
          _ = r.alive_vector
      added = len(graph.get_operations()) - before
      vectors = [r.regularization_vector for r in regularizers]
      total = tf.add_n([tf.reduce_sum(v * np.arange(1.0, 4.0)[:v.shape[0]])
                        for v in vectors])
      gradients = tf.gradients(total, variables)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        return session.run((vectors, [r.alive_vector for r in regularizers],
                            gradients)), added

  def test_same_values_and_gradients_as_alone(self):
    for fractions in ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.0, 0.25, 1.0)):
      alone, _ = self._run(False, fractions)
      together, _ = self._run(True, fractions)
      for expected, actual in zip(alone, together):  # Vectors, alive, grads.
        for e, a in zip(expected, actual):  # One per regularizer.
          self.assertAllEqual(e, a)
    (vectors, alive, gradients), _ = self._run(True, (0.0, 0.0, 0.0))
    # sqrt(mean(w^2)) over the 4 weights of each output channel.
    self.assertAllClose([np.sqrt(15.0 / 4), 0.0, np.sqrt(20.3125 / 4)],
                        vectors[0])
    self.assertAllEqual([True, False, True], alive[0])
    self.assertAllClose(np.sqrt([0.000005 / 2, 10.0 / 2]), vectors[1])
    self.assertAllEqual([False, True], alive[1])
    # The zero filter has a zero (not NaN) gradient.
    self.assertAllEqual(np.zeros([1, 2, 2]), gradients[0][..., 1])

  def test_together_shares_the_final_ops(self):
    _, alone = self._run(False, (0.0,) * 3)
    _, together = self._run(True, (0.0,) * 3)
    # Alone: square, mean (and its axes), the safe square root (6 ops), the
    # threshold and the comparison per regularizer.
    self.assertEqual(3 * 11, alone)
    # Together: the 3 ops of the means each, then one concat (and its axis),
    # square root, threshold, comparison and two splits (3 ops each).
    self.assertEqual(3 * 3 + 2 + 6 + 2 + 6, together)
