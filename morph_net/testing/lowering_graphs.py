"""Small graphs of the Keras 3 lowerings, built from TF ops, and their costs.

Builders take an input tensor and return the output; their weights are
variables whose values make chosen output channels exactly zero, so the
group-lasso analysis sees them dead. `traced_costs` and `graph_costs` build
regularizers on a traced function (a FuncGraph, as the Keras bridge does)
or on a TF1 graph, and evaluate their costs.
"""

import numpy as np
import tensorflow as tf

__all__ = ['weights', 'conv', 'traced_costs', 'graph_costs']

_v1 = tf.compat.v1


def weights(shape, dead=(), name=None):
  """A float32 variable of ones/10 whose last-axis entries `dead` are zero."""
  value = np.full(shape, 0.1, np.float32)
  for index in dead:
    value[..., index] = 0.0
  return tf.Variable(value, name=name)


def conv(x, kernel_shape, dead=(), strides=1, padding='SAME', name=None):
  kernel = weights(kernel_shape, dead, name=name and name + '_kernel')
  return tf.nn.conv2d(x, kernel, strides, padding, name=name)


def traced_costs(build, spec, regularizer_classes, **kwargs):
  """(manager, [cost of each class]) of `build` traced as a FuncGraph.

  Args:
    build: function of the input tensor returning the output tensor.
    spec: tf.TensorSpec of the input.
    regularizer_classes: network regularizer classes.
    **kwargs: passed to every class.
  """
  traced = _v1.wrap_function(build, [spec])
  graph = traced.graph
  with graph.as_default():
    inputs = [t.op for t in graph.inputs if t.dtype != tf.resource]
    regs = [cls([t.op for t in graph.outputs], input_boundary=inputs,
                **kwargs) for cls in regularizer_classes]
    fetches = [reg.get_cost() for reg in regs]
  values = traced.prune(feeds=[], fetches=fetches)()
  return regs[0].op_regularizer_manager, [float(v) for v in values]


def graph_costs(build, shape, regularizer_classes, **kwargs):
  """(manager, [cost of each class]) of `build` in a TF1 graph.

  Args:
    build: function of the input tensor returning the output tensor.
    shape: the input placeholder's shape.
    regularizer_classes: network regularizer classes.
    **kwargs: passed to every class.
  """
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, shape)
    y = build(x)
    regs = [cls([y.op], input_boundary=[x.op], **kwargs)
            for cls in regularizer_classes]
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      feed = {x: np.zeros([d or 1 for d in shape], np.float32)}
      values = session.run([reg.get_cost() for reg in regs], feed)
  return regs[0].op_regularizer_manager, [float(v) for v in values]
