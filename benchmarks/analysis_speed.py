r"""How long MorphNet's graph analysis takes to build, phase by phase.

Part (a): tf_slim resnet_v1_152 (224 x 224, is_training=True: 6,924 ops) in
TF1 graph mode. For each network regularizer the constructor (the op
regularizer manager's analysis), `get_regularization_term()` and
`get_cost()` are timed separately, in a fresh graph per run, and the graph
ops each phase adds are counted. With `--original_path` pointing at a
checkout of google-research/morph-net, the original library is timed the
same way, in its own process, and the ratios compare the two.

Part (b): keras.applications ResNet152 `ModelRegularizer` construction split
into tracing / analysis / term+cost construction / pruning (to be added by
the Keras bridge's owner, in `keras_resnet152_breakdown`).

TF1 mode is process-wide, so every measurement runs in a child process.

  python3 benchmarks/analysis_speed.py --repeats=3 \
      --original_path=/path/to/morph-net
"""

import multiprocessing
import os
import statistics
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# regularizer name -> (module, class, keyword arguments).
REGULARIZERS = {
    'GammaFlops': ('flop_regularizer', 'GammaFlopsRegularizer',
                   {'gamma_threshold': 0.01}),
    'GroupLassoFlops': ('flop_regularizer', 'GroupLassoFlopsRegularizer',
                        {'threshold': 0.01}),
    'GammaModelSize': ('model_size_regularizer', 'GammaModelSizeRegularizer',
                       {'gamma_threshold': 0.01}),
    'GammaLatency': ('latency_regularizer', 'GammaLatencyRegularizer',
                     {'gamma_threshold': 0.01, 'hardware': 'V100'}),
}
PHASES = ('manager', 'term', 'cost')


def _import_slim_for(original_path):
  """tf_slim through the project's compat.slim; then the library to time.

  The project's `import_slim` makes tf_slim importable next to TF 2.21. For
  the original library, the project's `morph_net` modules are then dropped
  so that `import morph_net` finds the original.
  """
  sys.path.insert(0, PROJECT_ROOT)
  from morph_net.compat import slim  # pylint: disable=g-import-not-at-top
  tf_slim = slim.import_slim()
  if original_path:
    for name in [n for n in sys.modules
                 if n == 'morph_net' or n.startswith('morph_net.')]:
      del sys.modules[name]
    sys.path.insert(0, original_path)
  return tf_slim


def _time_slim_resnet(original_path, names, repeats):
  """Child process: {regularizer: {phase: [seconds], 'ops': [...]}}."""
  import importlib  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.compat.v1.disable_v2_behavior()
  tf_slim = _import_slim_for(original_path)
  from tf_slim.nets import resnet_v1  # pylint: disable=g-import-not-at-top
  results = {'graph_ops': None}
  for name in names:
    module_name, class_name, kwargs = REGULARIZERS[name]
    module = importlib.import_module('morph_net.network_regularizers.' +
                                     module_name)
    regularizer_class = getattr(module, class_name)
    runs = {phase: [] for phase in PHASES}
    runs['ops'] = []
    for _ in range(repeats):
      graph = tf.Graph()
      with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3])
        with tf_slim.arg_scope(resnet_v1.resnet_arg_scope()):
          logits, _ = resnet_v1.resnet_v1_152(images, 1000, is_training=True)
        results['graph_ops'] = len(graph.get_operations())
        ops_before = results['graph_ops']
        start = time.perf_counter()
        regularizer = regularizer_class([logits.op],
                                        input_boundary=[images.op], **kwargs)
        after_manager = time.perf_counter()
        regularizer.get_regularization_term()
        after_term = time.perf_counter()
        regularizer.get_cost()
        after_cost = time.perf_counter()
        runs['manager'].append(after_manager - start)
        runs['term'].append(after_term - after_manager)
        runs['cost'].append(after_cost - after_term)
        runs['ops'].append(len(graph.get_operations()) - ops_before)
    results[name] = runs
  return results


def _in_child(function, *args):
  """Runs function(*args) in a fresh interpreter and returns its result."""
  with multiprocessing.get_context('spawn').Pool(1) as pool:
    return pool.apply(function, args)


def slim_resnet_breakdown(names, repeats, original_path=None):
  """Part (a): {library: {regularizer: {phase: median seconds, 'ops': n}}}."""
  libraries = {'project': None}
  if original_path:
    libraries['original'] = original_path
  table = {}
  for library, path in libraries.items():
    raw = _in_child(_time_slim_resnet, path, names, repeats)
    table[library] = {
        name: {key: statistics.median(values)
               for key, values in raw[name].items()} for name in names}
    table['graph_ops'] = raw['graph_ops']
  return table


def keras_resnet152_breakdown():
  """Part (b): keras.applications ResNet152 ModelRegularizer phases.

  To be added by the Keras bridge's owner: tracing / analysis / term+cost
  construction / pruning, in the format of `slim_resnet_breakdown`.
  """
  return None


def print_slim_table(table, repeats):
  """Prints part (a) with per-phase times and ratios."""
  print('(a) tf_slim resnet_v1_152, TF1 graph mode (%d ops), median of %d '
        'runs, seconds' % (table['graph_ops'], repeats))
  header = '%-9s %-16s %8s %8s %8s %10s %8s %9s' % (
      'library', 'regularizer', 'manager', 'term', 'cost', 'term+cost',
      'total', 'new ops')
  print(header)
  print('-' * len(header))
  for library in ('project', 'original'):
    for name, row in sorted(table.get(library, {}).items()):
      term_cost = row['term'] + row['cost']
      print('%-9s %-16s %8.3f %8.3f %8.3f %10.3f %8.3f %9d' % (
          library, name, row['manager'], row['term'], row['cost'], term_cost,
          row['manager'] + term_cost, row['ops']))
  for name, row in sorted(table['project'].items()):
    term_cost = row['term'] + row['cost']
    line = '%s: term+cost / manager = %.2f' % (name,
                                                 term_cost / row['manager'])
    original = table.get('original', {}).get(name)
    if original:
      line += ('; original / project: term+cost %.1fx, total %.1fx' % (
          (original['term'] + original['cost']) / term_cost,
          sum(original[p] for p in PHASES) / sum(row[p] for p in PHASES)))
    print(line)


def main(argv):
  del argv
  table = slim_resnet_breakdown(FLAGS.regularizers, FLAGS.repeats,
                                FLAGS.original_path)
  print_slim_table(table, FLAGS.repeats)
  keras_table = keras_resnet152_breakdown()
  if keras_table is not None:
    print(keras_table)


if __name__ == '__main__':
  flags.DEFINE_integer('repeats', 3, 'Timed runs per regularizer (median).')
  flags.DEFINE_list('regularizers', ['GammaFlops', 'GroupLassoFlops',
                                     'GammaLatency'],
                    'Regularizers to time: %s.' % ', '.join(REGULARIZERS))
  flags.DEFINE_string('original_path', None,
                      'A checkout of google-research/morph-net to time the '
                      'original library too (its morph_net/ folder inside).')
  app.run(main)
