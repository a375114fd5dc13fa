"""Minimal TF1-style layers built from raw ops, for graph-mode networks.

`tf.compat.v1.layers` is unavailable when Keras 3 is installed, so tests and
examples that build TF1 graphs use these. Each function creates its variables
with `tf.compat.v1.get_variable` (resource variables) under `name`, and ops
named like the original layers (`<name>/Conv2D`, `<name>/FusedBatchNormV3`).
"""

import tensorflow as tf

_v1 = tf.compat.v1


def _variable(name, shape, initializer=None):
  return _v1.get_variable(
      name, shape, initializer=initializer or
      _v1.initializers.glorot_uniform(), use_resource=True)


def conv2d(x, filters, kernel_size, strides=1, padding='SAME', name='conv',
           use_bias=False):
  """Conv2D with a [k, k, in, filters] kernel (NHWC)."""
  k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
  with _v1.variable_scope(name):
    kernel = _variable('kernel', [k[0], k[1], int(x.shape[-1]), filters])
    y = tf.nn.conv2d(x, kernel, strides, padding, name='Conv2D')
    if use_bias:
      y = tf.nn.bias_add(y, _variable('bias', [filters], _v1.zeros_initializer()))
  return y


def depthwise_conv2d(x, kernel_size, depth_multiplier=1, strides=1,
                     padding='SAME', name='depthwise'):
  """DepthwiseConv2dNative with a [k, k, in, multiplier] kernel."""
  with _v1.variable_scope(name):
    kernel = _variable('depthwise_kernel', [kernel_size, kernel_size,
                                            int(x.shape[-1]), depth_multiplier])
    return tf.nn.depthwise_conv2d(x, kernel, [1, strides, strides, 1], padding,
                                  name='depthwise')


def conv2d_transpose(x, filters, kernel_size, strides=2, padding='SAME',
                     name='conv_transpose'):
  """Conv2DBackpropInput producing `filters` channels."""
  with _v1.variable_scope(name):
    kernel = _variable('kernel', [kernel_size, kernel_size, filters,
                                  int(x.shape[-1])])
    n, h, w = x.shape[0], int(x.shape[1]), int(x.shape[2])
    out_h = h * strides if padding == 'SAME' else (h - 1) * strides + kernel_size
    out_w = w * strides if padding == 'SAME' else (w - 1) * strides + kernel_size
    return tf.nn.conv2d_transpose(x, kernel, [n, out_h, out_w, filters],
                                  strides, padding, name='conv2d_transpose')


def conv3d(x, filters, kernel_size, strides=1, padding='SAME', name='conv3d'):
  """Conv3D with a [k, k, k, in, filters] kernel (NDHWC)."""
  with _v1.variable_scope(name):
    kernel = _variable('kernel', [kernel_size] * 3 + [int(x.shape[-1]), filters])
    return tf.nn.conv3d(x, kernel, [1, strides, strides, strides, 1], padding,
                        name='Conv3D')


def dense(x, units, name='dense', use_bias=True):
  """MatMul (+ BiasAdd) with a [in, units] kernel."""
  with _v1.variable_scope(name):
    kernel = _variable('kernel', [int(x.shape[-1]), units])
    y = tf.matmul(x, kernel, name='MatMul')
    if use_bias:
      y = tf.nn.bias_add(y, _variable('bias', [units], _v1.zeros_initializer()))
  return y


def batch_norm(x, name='batch_norm', scale=True, is_training=False):
  """FusedBatchNormV3 with gamma (if scale), beta, moving mean and variance."""
  channels = int(x.shape[-1])
  with _v1.variable_scope(name):
    gamma = (_variable('gamma', [channels], _v1.ones_initializer()) if scale
             else tf.ones([channels], name='gamma_constant'))
    beta = _variable('beta', [channels], _v1.zeros_initializer())
    mean = _variable('moving_mean', [channels], _v1.zeros_initializer())
    variance = _variable('moving_variance', [channels], _v1.ones_initializer())
    y, _, _ = _v1.nn.fused_batch_norm(
        x, gamma, beta, None if is_training else mean,
        None if is_training else variance, is_training=is_training,
        name='FusedBatchNormV3')
  return y


def conv_bn_relu(x, filters, kernel_size=3, strides=1, name='block',
                 scale=True):
  """conv2d -> batch_norm -> relu, the unit most tests regularize."""
  y = conv2d(x, filters, kernel_size, strides, name=name + '_conv')
  y = batch_norm(y, name=name + '_bn', scale=scale)
  return tf.nn.relu(y, name=name + '_relu')


def get_variable(name):
  """Returns the global variable named `name` (without ':0') of the graph."""
  for variable in _v1.global_variables():
    if variable.op.name == name:
      return variable
  raise ValueError('No variable %r; variables: %s' % (
      name, [v.op.name for v in _v1.global_variables()]))


def assign(session, name, value):
  """Assigns `value` to the variable `name` (for example 'a_bn/gamma')."""
  variable = get_variable(name)
  session.run(variable.assign(tf.constant(value, dtype=variable.dtype)))


def evaluate(fetches, assignments=None):
  """Runs `fetches` in a new session of the default graph.

  Args:
    fetches: what `Session.run` takes.
    assignments: optional {variable name: value} set after initialisation.

  Returns:
    The fetched values.
  """
  with _v1.Session() as session:
    session.run(_v1.global_variables_initializer())
    for name, value in (assignments or {}).items():
      assign(session, name, value)
    return session.run(fetches)
