r"""Command line: scale a structure JSON by one width multiplier.

  python -m morph_net.tools.expand_structure --model=model.keras \
      --structure=learned_structure/alive --output=expanded.json \
      (--multiplier=1.5 | --target_cost=original | --target_cost=2e9) \
      [--regularizer=GammaFlopsRegularizer] [--round_to=8]

Prints the cost of the structure before and after, and writes the new
structure atomically (sorted keys, indent 2). `--multiplier` without
`--model` scales the file alone (no costs printed).
"""

from absl import app
from absl import flags

from morph_net.keras import expansion
from morph_net.network_regularizers import registry
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier

__all__ = ['define_flags', 'main']

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  flags.DEFINE_string('structure', None, 'Structure JSON {layer: width}.')
  flags.DEFINE_string('output', None, 'Where to write the scaled structure.')
  flags.DEFINE_string('model', None, 'Saved .keras model the structure '
                      'belongs to (needed for costs and --target_cost).')
  flags.DEFINE_float('multiplier', None, 'Width multiplier.')
  flags.DEFINE_string('target_cost', None, "Cost to reach, or 'original' for "
                      "the model's own cost.")
  flags.DEFINE_string('regularizer', 'GammaFlopsRegularizer',
                      'Network regularizer class whose cost is targeted.')
  flags.DEFINE_integer('round_to', 1, 'Round widths to a multiple of this.')
  flags.mark_flags_as_required(['structure', 'output'])


def main(argv):
  del argv
  if (FLAGS.multiplier is None) == (FLAGS.target_cost is None):
    raise app.UsageError('Pass exactly one of --multiplier and --target_cost.')
  if FLAGS.model is None:
    if FLAGS.target_cost is not None:
      raise app.UsageError('--target_cost needs --model.')
    structure = structure_files.read_structure(FLAGS.structure)
    structure_files.write_structure(
        width_multiplier.multiply(structure, FLAGS.multiplier,
                                  FLAGS.round_to), FLAGS.output)
    return
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.saving.load_model(FLAGS.model, compile=False)
  target = FLAGS.target_cost
  if target is not None and target != 'original':
    target = float(target)
  expansion.expand_file(
      model, FLAGS.structure, FLAGS.output, multiplier=FLAGS.multiplier,
      target_cost=target, round_to=FLAGS.round_to,
      resource=registry.get_regularizer_class(FLAGS.regularizer))


if __name__ == '__main__':
  define_flags()
  app.run(main)
