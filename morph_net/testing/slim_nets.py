r"""tf_slim networks in TF1 mode, analysed by the manager, as JSON facts.

TF1 mode (`tf.compat.v1.disable_v2_behavior()`) cannot be undone inside a
process, so tests run this module in a subprocess:

  python -m morph_net.testing.slim_nets resnet_v1_50 inception_v3 ...

For each network it builds the graph (tf_slim.nets with its arg scope),
builds an OpRegularizerManager with the Gamma and the GroupLasso registries,
and prints one JSON object per line: op, group and source counts, the group
of every op of one slice (`group_of`: op name -> index in
`manager.op_groups`, None if ungrouped), the slices of the others
(`slices`: [start, size, group index]), each concat's slice sizes and
sources, and counts of some op types in the whole graph (an independent
check of the source counts).
"""

import collections
import json
import os
import subprocess
import sys

import tensorflow as tf

from morph_net import errors
from morph_net.compat import slim as slim_compat
from morph_net.framework import op_regularizer_manager as orm
from morph_net.op_handlers import op_handlers

__all__ = ['NETWORKS', 'analyse', 'build', 'main', 'run_in_subprocess']

_v1 = tf.compat.v1

# Network name -> (input size, num_classes).
NETWORKS = {
    'resnet_v1_50': (64, 10),
    'resnet_v2_50': (64, 10),
    'inception_v1': (224, 10),
    'inception_v2': (224, 10),
    'inception_v3': (299, 10),
    'separable': (16, None),
}


def _separable(inputs, slim):
  """conv -> separable conv (depth multiplier 2) -> conv, with batch norm."""
  with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                      normalizer_fn=slim.batch_norm,
                      normalizer_params={'scale': True}):
    net = slim.conv2d(inputs, 3, [3, 3], scope='conv1')
    net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=2,
                                scope='dwise')
    return slim.conv2d(net, 4, [1, 1], scope='conv2')


def build(name):
  """Builds network `name` of NETWORKS in the default (TF1) graph.

  Args:
    name: a key of NETWORKS.

  Returns:
    (inputs, output): the input placeholder and the output tensor.
  """
  slim = slim_compat.import_slim()
  from tf_slim import nets  # pylint: disable=g-import-not-at-top
  size, num_classes = NETWORKS[name]
  inputs = _v1.placeholder(tf.float32, [1, size, size, 3], name='inputs')
  if name == 'separable':
    return inputs, _separable(inputs, slim)
  if name.startswith('resnet'):
    module = getattr(nets, name[:len('resnet_v1')])
    scope = module.resnet_arg_scope()
  else:
    module = nets.inception
    scope = getattr(module, name + '_arg_scope')()
  network = getattr(module, name)
  # Inception's batch norm has no scale by default: no Gamma source then.
  kwargs = {'create_aux_logits': False} if name == 'inception_v3' else {}
  with slim.arg_scope(scope), slim.arg_scope([slim.batch_norm], scale=True):
    logits, _ = network(inputs, num_classes=num_classes, is_training=False,
                        **kwargs)
  return inputs, logits


def analyse(name):
  """Builds network `name` and returns the facts of its analyses.

  Args:
    name: a key of NETWORKS.

  Returns:
    A list of two JSON-serialisable dicts, for the 'gamma' and the
    'group_lasso' registry.
  """
  with tf.Graph().as_default() as graph:
    inputs, output = build(name)
    type_counts = collections.Counter(op.type for op in graph.get_operations())
    facts = []
    for registry, handlers in (
        ('gamma', op_handlers.get_gamma_op_handler_dict(0.01)),
        ('group_lasso', op_handlers.get_group_lasso_op_handler_dict(0.01))):
      manager = orm.OpRegularizerManager([output.op], handlers,
                                         input_boundary=[inputs.op])
      facts.append(dict(_describe(manager), network=name, registry=registry,
                        graph_op_types={t: type_counts[t] for t in (
                            'Conv2D', 'DepthwiseConv2dNative',
                            'FusedBatchNormV3', 'ConcatV2', 'AddV2')}))
  return facts


def _describe(manager):
  """Returns the counts, groups and slices of a manager's analysis."""
  groups = manager.op_groups
  index = {id(group): i for i, group in enumerate(groups)}
  group_of, slices, concats = {}, {}, {}
  for op in manager.ops:
    op_slices = manager.get_op_slices(op)
    if len(op_slices) == 1:
      group = manager.get_op_group(op_slices[0])
      group_of[op.name] = None if group is None else index[id(group)]
    elif op_slices:
      slices[op.name] = [
          [s.slice.start_index, s.slice.size,
           index.get(id(manager.get_op_group(s)))] for s in op_slices]
    if op.type == 'ConcatV2':
      concats[op.name] = [
          [s.slice.size, _source_names(manager.get_op_group(s))]
          for s in op_slices]
  return {
      'ops': len(manager.ops),
      'groups': len(groups),
      'groups_with_sources': sum(1 for g in groups if g.source_op_slices),
      'source_ops': len(manager.source_ops),
      'source_types': sorted({op.type for op in manager.source_ops}),
      'group_of': group_of,
      'slices': slices,
      'concats': concats,
  }


def _source_names(group):
  return [] if group is None else sorted(
      s.op.name for s in group.source_op_slices)


def run_in_subprocess(names, timeout=900):
  """Runs `main` on `names` in a fresh TF1-mode process; returns its facts.

  Args:
    names: keys of NETWORKS.
    timeout: seconds.

  Returns:
    {(network, registry): facts dict}.

  Raises:
    InvalidArgumentError: for a name that is not in NETWORKS.
    RuntimeError: with the subprocess's stderr if it fails.
  """
  unknown = [name for name in names if name not in NETWORKS]
  if unknown:
    raise errors.InvalidArgumentError(
        'Unknown networks %s; expected names from slim_nets.NETWORKS: %s.' %
        (unknown, sorted(NETWORKS)))
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=os.pathsep.join(
                 [root] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  result = subprocess.run(
      [sys.executable, '-m', 'morph_net.testing.slim_nets'] + list(names),
      env=env, capture_output=True, text=True, timeout=timeout, check=False)
  if result.returncode:
    raise RuntimeError('slim_nets %s failed (exit code %d):\n%s' %
                       (' '.join(names), result.returncode,
                        result.stderr[-5000:]))
  facts = [json.loads(line) for line in result.stdout.splitlines()]
  return {(f['network'], f['registry']): f for f in facts}


def main(argv):
  """Prints one JSON line per network in argv[1:], for both registries."""
  _v1.disable_v2_behavior()
  for name in argv[1:]:
    for facts in analyse(name):
      print(json.dumps(facts, sort_keys=True))


if __name__ == '__main__':
  main(sys.argv)
