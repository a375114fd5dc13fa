r"""Rebuilds a trained model with the widths of a structure, as a .keras file.

From a structure file (what export_structure or expand_structure wrote):

    python -m morph_net.tools.rebuild_model --model=model.keras \
        --structure=alive.json --output=small.keras

An expanded structure is wider than the model's alive channels: give the
regularizer and threshold the model was trained with too, and only its
alive channels are copied (the others start fresh, rather than copied from
channels that were dead):

  python -m morph_net.tools.rebuild_model --model=model.keras \
      --structure=expanded.json --threshold=0.05 --output=wide.keras

From the model's own alive channels (a regularizer built on the loaded
model; use the threshold and regularizer the model was trained with):

    python -m morph_net.tools.rebuild_model --model=model.keras \
        --regularizer=GammaFlopsRegularizer --threshold=0.05 \
        --output=small.keras

The model also comes from --builder (with --checkpoint, --gin_file,
--gin_param), as in export_structure. Weights are transferred where the
structure narrows (with a regularizer, exactly its alive channels survive)
and the constant outputs of removed channels are folded into the layers
consuming them (--nofold_constants to copy the weights only); where a
group grows, as in an expanded structure, its layers get fresh weights with
the old ones in their first channels (where the layout allows). The model
is written atomically (a model loaded with --model has no compile state,
so neither has the result). Prints the parameter counts
before and after.

Exit status: 0 on success; 1 for a usage error (absl prints the usage, and
`--help` exits with 1 too, as in every absl program); 2 when the inputs
cannot be used (a missing file, an unknown regularizer name, a structure
that does not fit the model, ...): the reason is one line on stderr.
"""

# pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.tools import startup

if __name__ == '__main__':
  startup.quiet_start()  # Before TensorFlow is imported (see startup).

from absl import app
from absl import flags

from morph_net.structure import atomic_file
from morph_net.structure import structure_files
from morph_net.surgery import rebuild
from morph_net.tools import cli_common
from morph_net.tools import model_source
# pylint: enable=g-import-not-at-top,wrong-import-position

__all__ = ['define_flags', 'rebuild_to_file', 'main']

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  module = cli_common.flag_module_name(__name__)
  kwargs = dict(flag_values=flag_values, module_name=module)
  flags.DEFINE_string(
      'structure', None, 'Structure JSON {layer: width}; without it, the '
      'alive channels of --regularizer at --threshold on the model. With it '
      'and --threshold (or --regularizer), only those alive channels are '
      'copied and the rest of a wider structure starts fresh.',
      **kwargs)
  flags.DEFINE_string('output', None, 'The .keras file to write.', **kwargs)
  cli_common.define_model_flags(module, flag_values)
  cli_common.define_regularizer_flags(module, flag_values)
  flags.DEFINE_boolean(
      'fold_constants', True, 'Fold the constant outputs of removed '
      'channels into the layers consuming them.', **kwargs)
  flags.mark_flags_as_required(['output'], flag_values=flag_values)


def rebuild_to_file(model, structure, output: str,
                    fold_constants: bool = True, print_fn=print,
                    alive_masks=None):
  """Rebuilds `model` with `structure` and saves it atomically.

  Args:
    model: the trained Keras model.
    structure: {layer name: width}, or a regularizer on `model` (see
      `rebuild.rebuild`).
    output: the .keras file to write.
    fold_constants: see `rebuild.rebuild`.
    print_fn: where the line with the parameter counts goes.
    alive_masks: optional {layer: bool vector} of the channels to copy
      (see `rebuild.rebuild`).

  Returns:
    The rebuilt model.

  Raises:
    StructureError, WeightTransferError: as `rebuild.rebuild`.
  """
  small = rebuild.rebuild(model, structure, transfer_weights=True,
                          alive_masks=alive_masks,
                          fold_constants=fold_constants,
                          on_growth='initialize')
  with atomic_file.atomic_path(output) as path:
    small.save(path)
  print_fn('parameters before: %d  after: %d  (wrote %s)' % (
      model.count_params(), small.count_params(), output))
  return small


def main(argv):
  del argv
  if not FLAGS.output.endswith('.keras'):
    raise app.UsageError('--output must name a .keras file. Received: %r' %
                         FLAGS.output)
  cli_common.check_model_flags(required=True)
  if FLAGS.structure:
    model_source.check_exists(FLAGS.structure, 'structure')
    structure = structure_files.read_structure(FLAGS.structure)
  model = cli_common.model_from_flags()
  alive_masks = None
  if not FLAGS.structure:
    structure = cli_common.regularizer_from_flags(model)
  elif FLAGS['threshold'].present or FLAGS['regularizer'].present:
    alive_masks = cli_common.regularizer_from_flags(model).alive_vectors()
  rebuild_to_file(model, structure, FLAGS.output, FLAGS.fold_constants,
                  alive_masks=alive_masks)


if __name__ == '__main__':
  define_flags()
  cli_common.run(main)
