"""Run as a script: MorphNet costs of tf_slim networks in TF1 mode, and counts
made without MorphNet. Prints one JSON line {check: [morph_net, independent]}.

TF1 mode (`disable_v2_behavior`, shapes of `Dimension`) is process-wide, so
`test_tf1_slim_networks.py` runs this file in a fresh process.

Independent counts: FLOPs of Conv2D / MatMul ops from TensorFlow's profiler
(`float_ops`), depthwise convs by hand (the profiler does not see them);
model size from the trainable kernels' shapes; with dead channels, FLOPs by
hand from each conv's kernel and output shapes and the alive widths the
zeroed gammas (or filters) leave.
"""

import json

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

# pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.compat import slim as slim_compat
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import model_size_regularizer

tf_slim = slim_compat.import_slim()
from tf_slim.nets import inception_v2
from tf_slim.nets import resnet_v1
# pylint: enable=g-import-not-at-top,wrong-import-position

_v1 = tf.compat.v1
_KERNEL_NAMES = ('weights', 'depthwise_weights', 'pointwise_weights')
_RNG = np.random.RandomState(1234)


def profiler_flops(graph):
  """FLOPs of the Conv2D and MatMul ops as TF's profiler counts them."""
  options = _v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = _v1.profiler.profile(graph, cmd='scope', options=options)
  total, stack = 0, list(profile.children)
  while stack:
    node = stack.pop()
    stack.extend(node.children)
    try:
      op_type = graph.get_operation_by_name(node.name).type
    except KeyError:
      continue
    if op_type in ('Conv2D', 'MatMul'):
      total += node.float_ops
  return total


def kernel_weights():
  """Number of weights in trainable conv and dense kernels (no biases)."""
  return sum(int(np.prod(v.shape.as_list()))
             for v in _v1.trainable_variables()
             if v.op.name.split('/')[-1] in _KERNEL_NAMES)


def _kernel_name(op):
  """The name of the variable a conv or matmul reads its kernel from."""
  tensor = op.inputs[1]
  while tensor.op.type in ('Identity', 'ReadVariableOp'):
    tensor = tensor.op.inputs[0]
  return tensor.op.name


def hand_flops(graph, depthwise_only=False, widths=None):
  """2 x output positions x kernel x in x out per conv (x out: depthwise).

  Args:
    graph: the graph.
    depthwise_only: count DepthwiseConv2dNative ops only.
    widths: {kernel variable name: (alive in, alive out)} for convs with dead
      channels; other convs use their kernel's widths.

  Returns:
    The FLOPs of one example.
  """
  total = 0
  for op in graph.get_operations():
    if op.type not in ('Conv2D', 'DepthwiseConv2dNative', 'MatMul') or (
        depthwise_only and op.type != 'DepthwiseConv2dNative'):
      continue
    kernel = op.inputs[1].shape.as_list()
    channels_in, channels_out = kernel[-2], kernel[-1]
    if op.type == 'DepthwiseConv2dNative':
      channels_out *= channels_in
    channels_in, channels_out = (widths or {}).get(
        _kernel_name(op), (channels_in, channels_out))
    positions = int(np.prod(op.outputs[0].shape.as_list()[1:-1]))
    size = int(np.prod(kernel[:-2]))
    if op.type == 'DepthwiseConv2dNative':
      total += 2 * positions * size * channels_out
    else:
      total += 2 * positions * size * channels_in * channels_out
  return total


def zero_channels(session, variable_names, count, size):
  """Zeroes `count` random entries (same ones) of 1-D variables; returns how
  many stay."""
  dead = _RNG.choice(size, count, replace=False)
  for name in variable_names:
    variable = [v for v in _v1.global_variables() if v.op.name == name][0]
    value = session.run(variable)
    value[dead] = 0.0
    session.run(variable.assign(value))
  return size - count


def zero_filters(session, name, count):
  """Zeroes `count` random output filters of a kernel; returns how many stay."""
  variable = [v for v in _v1.global_variables() if v.op.name == name][0]
  value = session.run(variable)
  dead = _RNG.choice(value.shape[-1], count, replace=False)
  value[..., dead] = 0.0
  session.run(variable.assign(value))
  return value.shape[-1] - count


def _regularizers(logits, images):
  boundaries = dict(input_boundary=[images.op])
  return {
      'gamma': flop_regularizer.GammaFlopsRegularizer(
          [logits.op], gamma_threshold=1e-3, **boundaries),
      'group_lasso': flop_regularizer.GroupLassoFlopsRegularizer(
          [logits.op], threshold=1e-6, **boundaries),
      'size': model_size_regularizer.GammaModelSizeRegularizer(
          [logits.op], gamma_threshold=1e-3, **boundaries),
  }


def resnet_checks():
  """resnet_v1_50: residual adds; dead channels in a residual group."""
  results = {}
  graph = tf.Graph()
  with graph.as_default():
    images = _v1.placeholder(tf.float32, [1, 64, 64, 3])
    with tf_slim.arg_scope(resnet_v1.resnet_arg_scope()):
      logits, _ = resnet_v1.resnet_v1_50(images, 10, is_training=False)
    regs = _regularizers(logits, images)
    costs = {name: reg.get_cost() for name, reg in regs.items()}
    unit = 'resnet_v1_50/block%d/unit_%d/bottleneck_v1/%s'
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      flops = profiler_flops(graph)
      results['resnet_v1_50 gamma flops'] = [session.run(costs['gamma']),
                                             flops]
      results['resnet_v1_50 group lasso flops'] = [
          session.run(costs['group_lasso']), flops]
      results['resnet_v1_50 model size'] = [session.run(costs['size']),
                                            kernel_weights()]
      # Block 1's residual group: unit 1's shortcut and every conv3.
      group = zero_channels(
          session, [unit % (1, 1, 'shortcut/BatchNorm/gamma')] +
          [unit % (1, u, 'conv3/BatchNorm/gamma') for u in (1, 2, 3)], 40,
          256)
      inner = zero_channels(session, [unit % (2, 2, 'conv1/BatchNorm/gamma')],
                            50, 128)
      late = zero_channels(session, [unit % (3, 4, 'conv2/BatchNorm/gamma')],
                           100, 256)
      widths = {unit % (1, u, 'conv3/weights'): (64, group) for u in (1, 2, 3)}
      widths[unit % (1, 1, 'shortcut/weights')] = (64, group)
      for u in (2, 3):
        widths[unit % (1, u, 'conv1/weights')] = (group, 64)
      widths[unit % (2, 1, 'shortcut/weights')] = (group, 512)
      widths[unit % (2, 1, 'conv1/weights')] = (group, 128)
      widths[unit % (2, 2, 'conv1/weights')] = (512, inner)
      widths[unit % (2, 2, 'conv2/weights')] = (inner, 128)
      widths[unit % (3, 4, 'conv2/weights')] = (256, late)
      widths[unit % (3, 4, 'conv3/weights')] = (late, 1024)
      results['resnet_v1_50 gamma flops, dead channels'] = [
          session.run(costs['gamma']), hand_flops(graph, widths=widths)]
      # Group lasso: dead filters of one conv.
      alive = zero_filters(session, unit % (2, 3, 'conv1/weights'), 30)
      filters = {unit % (2, 3, 'conv1/weights'): (512, alive),
                 unit % (2, 3, 'conv2/weights'): (alive, 128)}
      results['resnet_v1_50 group lasso flops, dead filters'] = [
          session.run(costs['group_lasso']), hand_flops(graph,
                                                        widths=filters)]
  return results


def inception_checks():
  """inception_v2: concats, a separable (depthwise) first conv."""
  results = {}
  graph = tf.Graph()
  with graph.as_default():
    images = _v1.placeholder(tf.float32, [1, 224, 224, 3])
    with tf_slim.arg_scope(
        [tf_slim.conv2d, tf_slim.separable_conv2d],
        normalizer_fn=tf_slim.batch_norm,
        normalizer_params={'scale': True, 'is_training': False}):
      logits, _ = inception_v2.inception_v2(images, 10, is_training=False)
    regs = _regularizers(logits, images)
    costs = {name: reg.get_cost() for name, reg in regs.items()}
    mixed = 'InceptionV2/Mixed_3%s/Branch_%d/%s'
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      flops = profiler_flops(graph) + hand_flops(graph, depthwise_only=True)
      results['inception_v2 gamma flops'] = [session.run(costs['gamma']),
                                             flops]
      results['inception_v2 group lasso flops'] = [
          session.run(costs['group_lasso']), flops]
      results['inception_v2 model size'] = [session.run(costs['size']),
                                            kernel_weights()]
      # A branch-internal conv, a conv feeding Mixed_3b's concat, and the
      # separable first conv (its pointwise output).
      inner = zero_channels(
          session, [mixed % ('b', 1, 'Conv2d_0a_1x1/BatchNorm/gamma')], 20, 64)
      branch = zero_channels(
          session, [mixed % ('b', 0, 'Conv2d_0a_1x1/BatchNorm/gamma')], 10, 64)
      first = zero_channels(
          session, ['InceptionV2/Conv2d_1a_7x7/BatchNorm/gamma'], 16, 64)
      concat = 256 - 64 + branch
      widths = {
          mixed % ('b', 1, 'Conv2d_0a_1x1/weights'): (192, inner),
          mixed % ('b', 1, 'Conv2d_0b_3x3/weights'): (inner, 64),
          mixed % ('b', 0, 'Conv2d_0a_1x1/weights'): (192, branch),
          mixed % ('c', 0, 'Conv2d_0a_1x1/weights'): (concat, 64),
          mixed % ('c', 1, 'Conv2d_0a_1x1/weights'): (concat, 64),
          mixed % ('c', 2, 'Conv2d_0a_1x1/weights'): (concat, 64),
          mixed % ('c', 3, 'Conv2d_0b_1x1/weights'): (concat, 64),
          'InceptionV2/Conv2d_1a_7x7/pointwise_weights': (24, first),
          'InceptionV2/Conv2d_2b_1x1/weights': (first, 64),
      }
      results['inception_v2 gamma flops, dead channels'] = [
          session.run(costs['gamma']), hand_flops(graph, widths=widths)]
  return results


def separable_checks():
  """A MobileNet-like chain: depthwise convs grouped with their inputs."""
  results = {}
  graph = tf.Graph()
  with graph.as_default():
    images = _v1.placeholder(tf.float32, [1, 32, 32, 3])
    with tf_slim.arg_scope(
        [tf_slim.conv2d, tf_slim.separable_conv2d],
        normalizer_fn=tf_slim.batch_norm,
        normalizer_params={'scale': True, 'is_training': False}):
      net = tf_slim.conv2d(images, 16, 3, stride=2, scope='conv0')
      net = tf_slim.separable_conv2d(net, None, 3, depth_multiplier=1,
                                     scope='dw1')
      net = tf_slim.conv2d(net, 32, 1, scope='pw1')
      net = tf_slim.separable_conv2d(net, None, 3, depth_multiplier=1,
                                     stride=2, scope='dw2')
      net = tf_slim.conv2d(net, 24, 1, scope='pw2')
    logits = tf_slim.fully_connected(tf.reduce_mean(net, [1, 2]), 10,
                                     activation_fn=None, scope='fc')
    regs = _regularizers(logits, images)
    costs = {name: reg.get_cost() for name, reg in regs.items()}
    with _v1.Session() as session:
      session.run(_v1.global_variables_initializer())
      flops = profiler_flops(graph) + hand_flops(graph, depthwise_only=True)
      results['separable gamma flops'] = [session.run(costs['gamma']), flops]
      results['separable model size'] = [session.run(costs['size']),
                                         kernel_weights()]
      # conv0 and dw1 share channels: dead only where both gammas are 0.
      alive = zero_channels(session, ['conv0/BatchNorm/gamma',
                                      'dw1/BatchNorm/gamma'], 5, 16)
      zero_channels(session, ['dw1/BatchNorm/gamma'], 4, 16)  # Stays alive
      # where conv0's gamma is not 0 (max grouping).
      pointwise = zero_channels(session, ['pw1/BatchNorm/gamma',
                                          'dw2/BatchNorm/gamma'], 12, 32)
      widths = {'conv0/weights': (3, alive),
                'dw1/depthwise_weights': (alive, alive),
                'pw1/weights': (alive, pointwise),
                'dw2/depthwise_weights': (pointwise, pointwise),
                'pw2/weights': (pointwise, 24)}
      dead_in_dw1_only = session.run(costs['gamma'])
      results['separable gamma flops, dead channels'] = [
          dead_in_dw1_only, hand_flops(graph, widths=widths)]
  return results


def main():
  results = {}
  for checks in (resnet_checks, inception_checks, separable_checks):
    results.update(checks())
  print(json.dumps({k: [float(v) for v in pair]
                    for k, pair in results.items()}))


if __name__ == '__main__':
  main()
