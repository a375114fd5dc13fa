r"""Command line: measure a latency profile of this machine on a model's layers.

  python -m morph_net.tools.calibrate_latency --model=model.keras \
      --output=device.json [--batch_size=8] [--repeats=15] [--warmup=2] \
      [--threads=1] [--inter_op_threads=1] [--fractions=1,0.6,0.3] \
      [--statistic=median|min] [--clock=wall|cpu] [--model_structures=8] \
      [--whole_model_share=0.5] [--nowhole_model] [--budget=N] [--noprobe] \
      [--unstable_spread=0.1] [--max_attempts=3] [--multiples=1,4,8,16,32]

Times every costed layer of the model alone at several widths, and the
whole model at the same width fractions (warm, in groups the kernel caches
hold, interleaved repeats, medians with their IQR, unstable ones measured
again then flagged, a progress bar: `latency.measurement`), fits per op
kind latency = max(ns_per_flop x FLOPs, ns_per_byte x bytes) + overhead_ns
at channel counts rounded up to the profile's preferred multiple (chosen
among --multiples by held-out error), and writes the profile JSON
atomically with the fit's residuals. Use it with
`GammaLatencyRegularizer(..., hardware='device.json', batch_size=8)` (or any
latency regularizer, `StructureCost`, `expansion.expand_to_cost`). Threads are
pinned before TensorFlow starts; calibrate with the thread counts you deploy
with (1 and 1 by default: steady on a shared machine).
"""

from absl import app
from absl import flags

from morph_net.tools import startup

__all__ = ['define_flags', 'main']

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program)."""
  flags.DEFINE_string('model', None, 'Saved .keras model whose layers are '
                      'measured.')
  flags.DEFINE_string('output', None, 'Where to write the profile JSON.')
  flags.DEFINE_integer('batch_size', 1, 'Inference batch size.')
  flags.DEFINE_integer('repeats', 15, 'Interleaved timed rounds per layer.')
  flags.DEFINE_integer('warmup', 2, 'Untimed rounds per layer.')
  flags.DEFINE_integer('threads', 1, 'Intra-op threads (0: all cores).')
  flags.DEFINE_integer('inter_op_threads', 1, 'Inter-op threads (1: ops run '
                       'one after another, as the latency model sums them).')
  flags.DEFINE_list('fractions', ['1', '0.6', '0.3'], 'Width fractions each '
                    'layer is measured at.')
  flags.DEFINE_enum('statistic', 'median', ['median', 'min'], 'Summary of '
                    'the repeats: min is steadier on a busy machine.')
  flags.DEFINE_enum('clock', 'wall', ['wall', 'cpu'], 'Wall time, or the '
                    'CPU time of the process (with --threads=1: the latency '
                    'on an idle core, steady on a shared machine).')
  flags.DEFINE_boolean('whole_model', True, 'Also time the whole model at '
                       'each fraction and fit to it (see calibrate).')
  flags.DEFINE_integer('model_structures', 0, 'Also time this many random '
                       'structures of the whole model.')
  flags.DEFINE_float('whole_model_share', 0.5, 'Part of the fit\'s weight '
                     'the whole-model timings carry, in (0, 1).')
  flags.DEFINE_string('input_shape', None, 'Input shape without batch, e.g. '
                      '96,96,3, for a model saved without a static one.')
  flags.DEFINE_integer('budget', None, 'Kernel weight per timed group '
                       '(default: checked by measuring).', lower_bound=1)
  flags.DEFINE_boolean('probe', True, 'Without --budget, check the default '
                       'budget by measuring (--noprobe: take it).')
  flags.DEFINE_float('unstable_spread', 0.1, 'IQR / median above which a '
                     'measurement is repeated.', lower_bound=0.0)
  flags.DEFINE_integer('max_attempts', 3, 'Measurements of an unstable '
                       'variant before it is flagged.', lower_bound=1)
  flags.DEFINE_list('multiples', ['1', '4', '8', '16', '32'], 'Channel '
                    'multiples the fit chooses the preferred one among.')
  flags.mark_flags_as_required(['model', 'output'])


def _fractions(values):
  try:
    fractions = [float(v) for v in values]
  except ValueError:
    fractions = []
  if not fractions or not all(0 < f <= 1 for f in fractions):
    raise app.UsageError('--fractions must be numbers in (0, 1]; got %s.' %
                         ','.join(values))
  return fractions


def _multiples(values):
  try:
    multiples = [int(v) for v in values]
  except ValueError:
    multiples = []
  if not multiples or not all(m >= 1 for m in multiples):
    raise app.UsageError('--multiples must be integers >= 1; got %s.' %
                         ','.join(values))
  return tuple(multiples)


def main(argv):
  del argv
  fractions = _fractions(FLAGS.fractions)
  multiples = _multiples(FLAGS.multiples)
  if FLAGS.batch_size < 1 or FLAGS.repeats < 1:
    raise app.UsageError('--batch_size and --repeats must be >= 1.')
  if FLAGS.model_structures < 0 or not 0 < FLAGS.whole_model_share < 1:
    raise app.UsageError('--model_structures must be >= 0 and '
                         '--whole_model_share in (0, 1).')
  # Threads are fixed before anything runs a TensorFlow op.
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  timing.pin_threads(FLAGS.threads, FLAGS.inter_op_threads)
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.latency import calibration  # pylint: disable=g-import-not-at-top
  model = keras.saving.load_model(FLAGS.model, compile=False)
  if FLAGS.input_shape:
    shape = tuple(int(d) for d in FLAGS.input_shape.split(','))
    model = keras.models.clone_model(model, input_tensors=keras.Input(shape))
  profile = calibration.calibrate(
      model, batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
      warmup=FLAGS.warmup, fractions=fractions, statistic=FLAGS.statistic,
      whole_model=FLAGS.whole_model, clock=FLAGS.clock,
      model_structures=FLAGS.model_structures,
      whole_model_share=FLAGS.whole_model_share, budget=FLAGS.budget,
      probe=FLAGS.probe, unstable_spread=FLAGS.unstable_spread,
      max_attempts=FLAGS.max_attempts, multiples=multiples)
  calibration.save_profile(profile, FLAGS.output)
  print(calibration.summary(profile))
  print('%s: %d layers of %s calibrated in %.1f s on %s' % (
      FLAGS.output, profile.metadata['layers'], model.name,
      profile.metadata['seconds'], profile.device))


if __name__ == '__main__':
  startup.quiet_start()  # TensorFlow is imported in main (after flags).
  define_flags()
  startup.run(main)
