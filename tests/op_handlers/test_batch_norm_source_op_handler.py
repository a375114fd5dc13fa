"""BatchNormSourceOpHandler on Keras 3 batch norm, whose trace is not fused."""

import tensorflow as tf

from morph_net.compat import keras as compat
from morph_net.op_handlers import batch_norm_source_op_handler as bn

keras = compat.get_keras()


def _trace(axis):
  inputs = keras.Input((8, 8, 3), batch_size=1)
  y = keras.layers.Conv2D(4, 3, name='conv')(inputs)
  y = keras.layers.BatchNormalization(axis=axis, name='bn')(y)
  model = keras.Model(inputs, keras.layers.ReLU()(y))
  fn = tf.function(lambda x: model(x, training=False))
  return fn.get_concrete_function(tf.TensorSpec([1, 8, 8, 3])).graph


def test_one_source_per_batch_norm():
  for axis in (-1, 3):  # keras.applications use axis=3: [1, 1, 1, C] vectors.
    graph = _trace(axis)
    sources = [op for op in graph.get_operations()
               if bn.get_gamma(op) is not None]
    assert len(sources) == 1, (axis, [op.name for op in sources])
    assert sources[0].name.endswith('bn_1/batchnorm/mul_1'), sources[0].name
    data = sources[0].inputs[0]
    assert data.shape.as_list() == [1, 6, 6, 4]
    # The other multiply by the scale (moving mean * scale) is no source.
    shift = [op for op in graph.get_operations()
             if op.name.endswith('bn_1/batchnorm/mul_2')]
    assert len(shift) == 1 and bn.get_gamma(shift[0]) is None, axis
