r"""Writes the learned structure of a trained model, without training.

From a saved Keras model (read only; a model compiled with MorphNet's loss
loads too):

    python -m morph_net.tools.export_structure --model=model.keras \
        --output=structure.json [--regularizer=GammaFlopsRegularizer] \
        [--threshold=1e-3] [--input_shape=224,224,3]

From a model builder (optionally gin-configured) and trained weights, a
Keras weights file (`ModelCheckpoint(save_weights_only=True)`) or a TF
checkpoint:

    python -m morph_net.tools.export_structure --builder=my.module:build_model \
        --gin_file=model.gin --gin_param='build_model.width=2' \
        --checkpoint=/train/ckpt.weights.h5 --output=structure.json

Latency regularizers also take --hardware (a device name such as V100, or a
device profile path) and --batch_size. With a profile whose
`preferred_multiple` is above 1, the widths are rounded up to it (capped at
the layer's width; the profile costs them so anyway); --round_to sets
another multiple (1: the alive counts as they are).

The JSON is the structure exporter's ({Keras layer name: alive count},
sorted keys, indent 2), written atomically. A channel is alive when its
regularization value exceeds --threshold: use the threshold the model was
trained with.

Exit status: 0 on success; 1 for a usage error (absl prints the usage, and
`--help` exits with 1 too, as in every absl program); 2 when the inputs
cannot be used (a missing file, an unknown regularizer name, an unknown
input size, ...): the reason is one line on stderr.
"""

# pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.tools import startup

if __name__ == '__main__':
  startup.quiet_start()  # Before TensorFlow is imported (see startup).

from absl import app
from absl import flags

from morph_net import errors
from morph_net.keras import model_regularizer as model_regularizer_lib
from morph_net.structure import structure_files
from morph_net.tools import cli_common
from morph_net.tools import model_source
# pylint: enable=g-import-not-at-top,wrong-import-position

__all__ = ['define_flags', 'load_builder', 'restore_checkpoint', 'export',
           'CheckpointMismatchError', 'main']

FLAGS = flags.FLAGS
# Raised by restore_checkpoint; a morph_net.errors.Error and a ValueError.
CheckpointMismatchError = errors.CheckpointMismatchError
load_builder = model_source.load_builder
restore_checkpoint = model_source.restore_checkpoint


def define_flags(flag_values=FLAGS):
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  module = cli_common.flag_module_name(__name__)
  cli_common.define_model_flags(module, flag_values)
  cli_common.define_regularizer_flags(module, flag_values)
  flags.DEFINE_string('output', None, 'Structure JSON to write.',
                      flag_values=flag_values, module_name=module)
  flags.DEFINE_integer('round_to', None, 'Round widths up to a multiple of '
                       "this (default: a latency profile's preferred_multiple "
                       'with --hardware=<profile.json>, else 1).',
                       lower_bound=1, flag_values=flag_values,
                       module_name=module)


def export(model, output, regularizer_class=None, threshold=1e-3,
           round_to=None):
  """Writes the alive counts of a model's regularizer as a structure JSON.

  Args:
    model: a built Keras model (a regularizer is built on it), or a
      `ModelRegularizer` whose alive counts are written as they are.
    output: the JSON file to write (atomically; sorted keys, indent 2).
    regularizer_class: with a model, the network regularizer class
      (default GammaFlopsRegularizer).
    threshold: with a model, the regularizer's alive threshold.
    round_to: round the counts up to a multiple of this, capped at the
      layers' widths (`ModelRegularizer.aligned_counts`); default a latency
      profile's `preferred_multiple`, else 1.

  Returns:
    {layer name: alive count (rounded)}.
  """
  regularizer = (model if isinstance(model,
                                     model_regularizer_lib.ModelRegularizer)
                 else model_regularizer_lib.model_regularizer(
                     model, regularizer_class, threshold))
  counts = regularizer.aligned_counts(round_to)
  structure_files.write_structure(counts, output)
  return counts


def main(argv):
  del argv
  if not FLAGS.output:
    raise app.UsageError('--output is required.')
  cli_common.check_model_flags(required=True)
  model = cli_common.model_from_flags()
  regularizer = cli_common.regularizer_from_flags(model)
  counts = export(regularizer, FLAGS.output, round_to=FLAGS.round_to)
  print('Wrote %d layers to %s.' % (len(counts), FLAGS.output))


if __name__ == '__main__':
  define_flags()
  cli_common.run(main)
