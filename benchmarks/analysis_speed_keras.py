r"""Analysis speed, part (b): a keras.applications model's ModelRegularizer.

  python3 benchmarks/analysis_speed_keras.py --model=ResNet152 --size=224

Times, in one process and on one model, what `ModelRegularizer` construction
is made of, each step as the bridge does it:

  keras trace    tf.function(model).get_concrete_function: the time Keras
                 needs to trace the model (the reference);
  trace          TracedModel(model) (tf.compat.v1.wrap_function);
  analysis       the network regularizer on the traced graph (the manager);
  term           get_regularization_term() in that graph;
  term function  TracedModel.function_of(term) (what WrappedFunction.prune
                 did before);
  construction   ModelRegularizer(model, ...) end to end: the four steps
                 above (the cost is built on first use);
  cost           the first cost() call: get_cost() in the graph, its
                 function, and its first run;
  first term     the first term() call (TensorFlow builds and optimises
                 the function).

Each step is timed `--repeats` times and the fastest run is kept, as wall
time and as CPU time of this process (the machine may be shared). Part (a)
(tf_slim resnet_v1_152 in TF1 mode) is `benchmarks/analysis_speed.py`.
"""

import os
import time
from typing import Callable, Dict, Tuple

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import keras
import tensorflow as tf

from morph_net.keras import model_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.keras import tracing
from morph_net.network_regularizers import flop_regularizer

__all__ = ['keras_breakdown', 'print_breakdown']

STEPS = ('keras trace', 'trace', 'analysis', 'term', 'term function',
         'construction', 'cost', 'first term')


def _fastest(fn: Callable[[], object], repeats: int):
  """((wall s, CPU s) of the fastest of `repeats` runs, last result)."""
  best, result = (float('inf'), float('inf')), None
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
  return best, result


def keras_breakdown(model_name: str = 'ResNet152', size: int = 224,
                    repeats: int = 1,
                    regularizer_class=flop_regularizer.GammaFlopsRegularizer,
                    **regularizer_kwargs) -> Dict[str, Tuple[float, float]]:
  """Seconds of each step of ModelRegularizer construction (see the module).

  Args:
    model_name: a keras.applications model, built with weights=None.
    size: the input height and width.
    repeats: runs per step; the fastest is kept.
    regularizer_class: the network regularizer class.
    **regularizer_kwargs: its arguments (default gamma_threshold=1e-3).

  Returns:
    {step name: (wall seconds, CPU seconds)} for every name of STEPS.
  """
  regularizer_kwargs = regularizer_kwargs or {'gamma_threshold': 1e-3}
  model = getattr(keras.applications, model_name)(
      weights=None, input_shape=(size, size, 3))
  spec = tf.TensorSpec((None, size, size, 3))
  seconds = {}
  seconds['keras trace'], _ = _fastest(
      lambda: tf.function(lambda x: model(x, training=False))
      .get_concrete_function(spec), repeats)
  seconds['trace'], traced = _fastest(lambda: tracing.TracedModel(model),
                                      repeats)
  seconds['analysis'], regularizer = _fastest(
      lambda: traced.build_regularizer(regularizer_class,
                                       **regularizer_kwargs), repeats)

  def term():
    with traced.graph.as_default():
      return regularizer.get_regularization_term()

  seconds['term'], term_tensor = _fastest(term, repeats)
  seconds['term function'], _ = _fastest(
      lambda: traced.function_of(term_tensor), repeats)
  seconds['construction'], built = _fastest(
      lambda: model_regularizer.ModelRegularizer(
          model, regularizer_class, **regularizer_kwargs), repeats)
  seconds['cost'], _ = _fastest(lambda: built.cost().numpy(), 1)
  seconds['first term'], _ = _fastest(lambda: built.term().numpy(), 1)
  return seconds


def print_breakdown(seconds: Dict[str, Tuple[float, float]],
                    label: str) -> None:
  """Prints the steps and construction's distance to Keras's own trace."""
  print('(b) %s ModelRegularizer construction (wall s, CPU s):' % label)
  for step in STEPS:
    print('  %-14s %7.2f %7.2f' % ((step,) + tuple(seconds[step])))
  for column, unit in enumerate(('wall', 'CPU')):
    construction = seconds['construction'][column]
    reference = seconds['keras trace'][column]
    print('  %s: construction - keras trace = %.2f s (target <= 1.0 s), '
          'with the first cost() %.2f s; construction / keras trace = %.2f'
          % (unit, construction - reference,
             construction + seconds['cost'][column] - reference,
             construction / reference))


FLAGS = flags.FLAGS


def main(argv):
  del argv
  seconds = keras_breakdown(FLAGS.model, FLAGS.size, FLAGS.repeats)
  print_breakdown(seconds, '%s %dx%d' % (FLAGS.model, FLAGS.size,
                                        FLAGS.size))


if __name__ == '__main__':
  flags.DEFINE_string('model', 'ResNet152', 'keras.applications model.')
  flags.DEFINE_integer('size', 224, 'Input height and width.')
  flags.DEFINE_integer('repeats', 1, 'Runs per step (the fastest is kept).')
  app.run(main)
