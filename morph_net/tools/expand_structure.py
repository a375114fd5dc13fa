r"""Scales a structure JSON by one width multiplier, to a cost or by a factor.

    python -m morph_net.tools.expand_structure --model=model.keras \
        --structure=learned_structure/alive --output=expanded.json \
        (--multiplier=1.5 | --target_cost=original | --target_cost=2e9) \
        [--regularizer=GammaFlopsRegularizer] [--round_to=8] \
        [--input_shape=224,224,3] [--hardware=V100 --batch_size=8]

The model also comes from --builder (with --checkpoint, --gin_file,
--gin_param), as in export_structure. The cost is the named regularizer's
(FLOPs, model size, activation count, or latency on --hardware at
--batch_size) of the model rebuilt with the structure. Prints the cost of
the structure before and after, and writes the new structure atomically
(sorted keys, indent 2). `--multiplier` without a model scales the file
alone (no costs printed).

Exit status: 0 on success; 1 for a usage error (absl prints the usage, and
`--help` exits with 1 too, as in every absl program); 2 when the inputs
cannot be used (a missing file, an unknown regularizer name, an unknown
input size, a structure that names no layer of the model, ...): the reason
is one line on stderr.
"""

# pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.tools import startup

if __name__ == '__main__':
  startup.quiet_start()  # Before TensorFlow is imported (see startup).

from absl import app
from absl import flags

from morph_net.keras import expansion
from morph_net.keras import structure_cost
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier
from morph_net.tools import cli_common
from morph_net.tools import model_source
# pylint: enable=g-import-not-at-top,wrong-import-position

__all__ = ['define_flags', 'parse_target_cost', 'main']

FLAGS = flags.FLAGS


def parse_target_cost(text):
  """'original' or a number; None for None."""
  if text is None or text == 'original':
    return text
  return float(text)


def _valid_target_cost(text) -> bool:
  try:
    parse_target_cost(text)
  except ValueError as e:
    raise flags.ValidationError(
        "Expected a number or 'original'. Received: %r" % text) from e
  return True


def define_flags(flag_values=FLAGS):
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  module = cli_common.flag_module_name(__name__)
  kwargs = dict(flag_values=flag_values, module_name=module)
  flags.DEFINE_string('structure', None, 'Structure JSON {layer: width}.',
                      **kwargs)
  flags.DEFINE_string('output', None, 'Where to write the scaled structure.',
                      **kwargs)
  cli_common.define_model_flags(module, flag_values)
  cli_common.define_regularizer_flags(module, flag_values)
  flags.DEFINE_float('multiplier', None, 'Width multiplier.', **kwargs)
  flags.DEFINE_string('target_cost', None, "Cost to reach, in the "
                      "regularizer's unit, or 'original' for the model's "
                      'own cost.', **kwargs)
  flags.register_validator('target_cost', _valid_target_cost,
                           flag_values=flag_values)
  flags.DEFINE_integer('round_to', None, 'Round widths to a multiple of '
                       "this (default: a latency profile's preferred_multiple "
                       'with --hardware=<profile.json>, else 1).',
                       lower_bound=1, **kwargs)
  flags.mark_flags_as_required(['structure', 'output'],
                               flag_values=flag_values)


def main(argv):
  del argv
  if (FLAGS.multiplier is None) == (FLAGS.target_cost is None):
    raise app.UsageError('Pass exactly one of --multiplier and --target_cost.')
  has_model = cli_common.check_model_flags(required=False)
  if not has_model and FLAGS.target_cost is not None:
    raise app.UsageError('--target_cost needs --model. Or pass --builder '
                         '(with --checkpoint) instead.')
  model_source.check_exists(FLAGS.structure, 'structure')
  if not has_model:
    structure = structure_files.read_structure(FLAGS.structure)
    structure_files.write_structure(
        width_multiplier.multiply(structure, FLAGS.multiplier,
                                  FLAGS.round_to or 1), FLAGS.output)
    return
  model = cli_common.model_from_flags()
  regularizer = cli_common.regularizer_from_flags(model)
  expansion.expand_file(
      structure_cost.StructureCost(regularizer), FLAGS.structure,
      FLAGS.output, multiplier=FLAGS.multiplier,
      target_cost=parse_target_cost(FLAGS.target_cost),
      round_to=FLAGS.round_to)


if __name__ == '__main__':
  define_flags()
  cli_common.run(main)
