r"""How long MorphNet's graph analysis takes to build, phase by phase.

  python3 benchmarks/analysis_speed.py --repeats=3 \
      [--original_path=/path/to/morph-net]

(`--regularizers=` skips part (a), `--keras_model=` part (b).)

Both parts run in one program, each in a fresh child process, and report the
median of `--repeats` runs with the machine's load average (the figures in
docs/guides/experiments.md come from a shared 2-core CPU: compare ratios,
not seconds).

Part (a): tf_slim resnet_v1_152 (224 x 224, is_training=True: 6,924 ops) in
TF1 graph mode. For each network regularizer the constructor (the op
regularizer manager's analysis), `get_regularization_term()` and
`get_cost()` are timed separately (CPU seconds of the process; the wall time
of the three is shown too), in a fresh graph per run, and the graph ops each
phase adds are counted. With `--original_path` pointing at a
checkout of google-research/morph-net, the original library is timed the
same way, in its own process, and the ratios compare the two.

Part (b): keras.applications ResNet152 (224 x 224, weights=None)
`ModelRegularizer` construction, split into the steps the bridge takes, each
on a fresh trace, in wall and CPU seconds of the process:

  keras trace    tf.function(model).get_concrete_function: the time Keras
                 needs to trace the model (the reference);
  tracing        TracedModel(model) (tf.compat.v1.wrap_function);
  analysis       the network regularizer on the traced graph (the manager);
  term+cost      get_regularization_term() and get_cost() in that graph;
  pruning        the functions of the live variables computing the term and
                 the cost (`TracedModel.function_of`);
  construction   ModelRegularizer(model, ...) end to end (tracing, analysis,
                 the term and its function; the cost's is made on first use);
  first cost     the first cost() call (its ops, function and first run).

TF1 mode is process-wide, so every measurement runs in a child process.
"""

import gc
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
    runs['wall'] = []
    for _ in range(repeats):
      graph = tf.Graph()
      with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3])
        with tf_slim.arg_scope(resnet_v1.resnet_arg_scope()):
          logits, _ = resnet_v1.resnet_v1_152(images, 1000, is_training=True)
        results['graph_ops'] = len(graph.get_operations())
        ops_before = results['graph_ops']
        gc.collect()
        start, start_wall = time.process_time(), time.perf_counter()
        regularizer = regularizer_class([logits.op],
                                        input_boundary=[images.op], **kwargs)
        after_manager = time.process_time()
        regularizer.get_regularization_term()
        after_term = time.process_time()
        regularizer.get_cost()
        after_cost = time.process_time()
        runs['wall'].append(time.perf_counter() - start_wall)
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


KERAS_STEPS = ('keras trace', 'tracing', 'analysis', 'term+cost', 'pruning',
               'construction', 'first cost')


def _timed(record, step, function):
  """Runs function() after a garbage collection; records (wall, CPU) s."""
  gc.collect()
  wall, cpu = time.perf_counter(), time.process_time()
  result = function()
  record.setdefault(step, []).append(
      (time.perf_counter() - wall, time.process_time() - cpu))
  return result


def _time_keras(model_name, size, regularizer_name, repeats):
  """Child process: {step: [(wall s, CPU s) per run]} (see the module)."""
  import importlib  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, PROJECT_ROOT)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from morph_net.keras import model_regularizer  # pylint: disable=g-import-not-at-top
  from morph_net.keras import tracing  # pylint: disable=g-import-not-at-top
  module_name, class_name, kwargs = REGULARIZERS[regularizer_name]
  regularizer_class = getattr(importlib.import_module(
      'morph_net.network_regularizers.' + module_name), class_name)
  model = getattr(keras.applications, model_name)(
      weights=None, input_shape=(size, size, 3))
  spec = tf.TensorSpec((None, size, size, 3))

  def keras_trace():
    return tf.function(lambda x: model(x, training=False)
                      ).get_concrete_function(spec)

  def construction():
    return model_regularizer.ModelRegularizer(model, regularizer_class,
                                              **kwargs)

  keras_trace()  # Both paths once untimed: Keras builds its call caches.
  construction().cost()
  record = {}
  for _ in range(repeats):
    _timed(record, 'keras trace', keras_trace)
    traced = _timed(record, 'tracing', lambda: tracing.TracedModel(model))
    regularizer = _timed(record, 'analysis', lambda: traced.build_regularizer(
        regularizer_class, **kwargs))

    def term_and_cost():
      with traced.graph.as_default():
        return (regularizer.get_regularization_term(),
                regularizer.get_cost())

    fetches = _timed(record, 'term+cost', term_and_cost)
    _timed(record, 'pruning', lambda: [traced.function_of(f) for f in fetches])
    built = _timed(record, 'construction', construction)
    _timed(record, 'first cost', lambda: built.cost().numpy())
  return record


def keras_breakdown(model_name='ResNet152', size=224,
                    regularizer_name='GammaFlops', repeats=3):
  """Part (b): {step: (median wall s, median CPU s)} and the paired excess.

  Args:
    model_name: a keras.applications model (built with weights=None).
    size: its input height and width.
    regularizer_name: a key of REGULARIZERS.
    repeats: runs of every step.

  Returns:
    {step: (wall, CPU)} medians for every step of KERAS_STEPS, plus
    'excess': the median over runs of construction - keras trace (wall,
    CPU), which the acceptance bounds by 1.0 s.
  """
  raw = _in_child(_time_keras, model_name, size, regularizer_name, repeats)
  table = {step: tuple(statistics.median(run[i] for run in raw[step])
                       for i in (0, 1)) for step in KERAS_STEPS}
  table['excess'] = tuple(
      statistics.median(built[i] - reference[i] for built, reference in
                        zip(raw['construction'], raw['keras trace']))
      for i in (0, 1))
  return table


def print_keras_table(table, label, repeats):
  """Prints part (b): the steps, their share and construction's excess."""
  print('(b) %s ModelRegularizer construction, median of %d runs, seconds'
        % (label, repeats))
  header = '%-14s %8s %8s %14s' % ('step', 'wall', 'CPU',
                                   'CPU / trace')
  print(header)
  print('-' * len(header))
  reference = table['keras trace'][1]
  for step in KERAS_STEPS:
    wall, cpu = table[step]
    print('%-14s %8.3f %8.3f %14.3f' % (step, wall, cpu, cpu / reference))
  wall, cpu = table['excess']
  print('construction - keras trace (median of paired runs): wall %.2f s, '
        'CPU %.2f s (target <= 1.0 s); construction / keras trace = %.2f '
        '(CPU)' % (wall, cpu, table['construction'][1] / reference))
  analysis = sum(table[s][1] for s in ('analysis', 'term+cost', 'pruning'))
  print('analysis + term+cost + pruning = %.3f CPU s = %.2f of the keras '
        'trace; tracing / keras trace = %.2f' % (
            analysis, analysis / reference, table['tracing'][1] / reference))


def print_slim_table(table, repeats):
  """Prints part (a) with per-phase times and ratios."""
  print('(a) tf_slim resnet_v1_152, TF1 graph mode (%d ops), median of %d '
        'runs, CPU seconds of the process (and wall seconds of the total)' %
        (table['graph_ops'], repeats))
  header = '%-9s %-16s %8s %8s %8s %10s %8s %8s %9s' % (
      'library', 'regularizer', 'manager', 'term', 'cost', 'term+cost',
      'total', 'wall', 'new ops')
  print(header)
  print('-' * len(header))
  for library in ('project', 'original'):
    for name, row in sorted(table.get(library, {}).items()):
      term_cost = row['term'] + row['cost']
      print('%-9s %-16s %8.3f %8.3f %8.3f %10.3f %8.3f %8.3f %9d' % (
          library, name, row['manager'], row['term'], row['cost'], term_cost,
          row['manager'] + term_cost, row['wall'], row['ops']))
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


def _load():
  """The 1-minute load average of the machine (as `uptime` shows)."""
  return os.getloadavg()[0]


def main(argv):
  del argv
  print('load average at start: %.2f (%d cores)' % (_load(), os.cpu_count()))
  if FLAGS.regularizers:  # --regularizers= skips part (a).
    table = slim_resnet_breakdown(FLAGS.regularizers, FLAGS.repeats,
                                  FLAGS.original_path)
    print_slim_table(table, FLAGS.repeats)
    print('load average: %.2f\n' % _load())
  if FLAGS.keras_model:  # --keras_model= skips part (b).
    keras_table = keras_breakdown(FLAGS.keras_model, FLAGS.keras_size,
                                  FLAGS.keras_regularizer, FLAGS.repeats)
    print_keras_table(keras_table, '%s %dx%d %s' % (
        FLAGS.keras_model, FLAGS.keras_size, FLAGS.keras_size,
        FLAGS.keras_regularizer), FLAGS.repeats)
  print('load average at end: %.2f' % _load())


if __name__ == '__main__':
  flags.DEFINE_integer('repeats', 3, 'Timed runs of every step (median).')
  flags.DEFINE_list('regularizers', ['GammaFlops', 'GroupLassoFlops',
                                     'GammaLatency'],
                    'Part (a) regularizers: %s.' % ', '.join(REGULARIZERS))
  flags.DEFINE_string('original_path', None,
                      'A checkout of google-research/morph-net to time the '
                      'original library too (its morph_net/ folder inside).')
  flags.DEFINE_string('keras_model', 'ResNet152',
                      'Part (b) keras.applications model.')
  flags.DEFINE_integer('keras_size', 224, 'Part (b) input height and width.')
  flags.DEFINE_string('keras_regularizer', 'GammaFlops',
                      'Part (b) regularizer: %s.' % ', '.join(REGULARIZERS))
  app.run(main)
