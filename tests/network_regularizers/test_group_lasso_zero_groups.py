"""GroupLasso regularizers stay finite when a whole group is exactly zero.

The group norm sqrt(mean(w^2)) has no derivative at 0; an exactly-zero filter
or a zero-initialized Dense used to make every gradient NaN after one step.
"""

import numpy as np
import tensorflow as tf

from morph_net import keras as morph_keras
from morph_net.compat import keras as compat
from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


class Tf1ZeroFilterTest(tf.test.TestCase):

  def test_term_gradient_and_one_step_are_finite(self):
    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [2, 4, 4, 2])
      a = layers.conv2d(x, 3, 3, name='a')
      b = layers.conv2d(tf.nn.relu(a), 2, 1, name='b')
      reg = flop_regularizer.GroupLassoFlopsRegularizer(
          [b.op], threshold=1e-3, input_boundary=[x.op])
      kernel_a = layers.get_variable('a/kernel')
      kernel_b = layers.get_variable('b/kernel')
      term = reg.get_regularization_term()
      loss = tf.reduce_mean(tf.square(b)) + 1e-3 * term
      gradients = tf.gradients(term, [kernel_a, kernel_b])
      step = _v1.train.GradientDescentOptimizer(0.1).minimize(loss)
      with _v1.Session() as session:
        session.run(_v1.global_variables_initializer())
        session.run(kernel_a.assign(
            kernel_a * np.array([1.0, 0.0, 1.0], np.float32)))
        grad_a, grad_b, cost = session.run(gradients + [reg.get_cost()])
        session.run(step, {x: np.ones([2, 4, 4, 2], np.float32)})
        after, loss_value = session.run(
            [kernel_a, loss], {x: np.ones([2, 4, 4, 2], np.float32)})
    self.assertTrue(np.all(np.isfinite(grad_a)))
    self.assertTrue(np.all(np.isfinite(grad_b)))
    # The zero filter's norm has gradient 0 (a subgradient), not NaN.
    self.assertAllEqual(np.zeros([3, 3, 2]), grad_a[..., 1])
    self.assertTrue(np.all(np.isfinite(after)))
    self.assertTrue(np.isfinite(loss_value))
    # Filter 1 of a is dead: a costs 2 * 16 * 9 * 2 * 2, b 2 * 16 * 2 * 2.
    self.assertEqual(2 * 16 * 9 * 2 * 2 + 2 * 16 * 1 * 2 * 2, cost)


class KerasZeroDenseTest(tf.test.TestCase):

  def test_fit_one_step_with_zero_initialized_dense(self):
    keras = compat.get_keras()
    keras.backend.clear_session()
    inputs = keras.Input((6, 6, 3))
    y = keras.layers.Conv2D(4, 3, padding='same', name='conv')(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(5, kernel_initializer='zeros', name='hidden')(y)
    y = keras.layers.ReLU()(y)
    model = keras.Model(inputs, keras.layers.Dense(3, name='logits')(y))
    conv = model.get_layer('conv')
    kernel = conv.kernel.numpy()
    kernel[..., 2] = 0.0  # One exactly-zero filter too.
    conv.kernel.assign(kernel)
    reg = morph_keras.ModelRegularizer(
        model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
    reg.set_strength(1e-3)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=reg.wrap_loss('sparse_categorical_crossentropy'))
    x = np.random.RandomState(0).rand(4, 6, 6, 3).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    history = model.fit(x, labels, batch_size=4, epochs=1, verbose=0)
    self.assertTrue(np.isfinite(history.history['loss'][0]))
    for weight in model.weights:
      self.assertTrue(np.all(np.isfinite(np.asarray(weight))), weight.path)
    self.assertTrue(np.isfinite(float(reg.term())))
    # Every unit of 'hidden' is dead, but it is the only path to the
    # logits: its strongest unit stays (min_channels=1) unless asked not to.
    self.assertEqual(1, reg.alive_counts()['hidden'])
    bare = morph_keras.ModelRegularizer(
        model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3,
        min_channels=0)
    self.assertEqual(0, bare.alive_counts()['hidden'])


if __name__ == '__main__':
  tf.test.main()
