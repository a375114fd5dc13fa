r"""Command line: write the structure of a model without training.

From a saved Keras model (read only):

  python -m morph_net.tools.export_structure --model=model.keras \
      --output=structure.json [--regularizer=GammaFlopsRegularizer] \
      [--threshold=1e-3]

From a TF checkpoint and a model builder (optionally gin-configured):

  python -m morph_net.tools.export_structure --builder=my.module:build_model \
      --gin_file=model.gin --gin_param='build_model.width=2' \
      --checkpoint=/train/ckpt-100 --output=structure.json

The JSON is the structure exporter's ({Keras layer name: alive count},
sorted keys, indent 2), written atomically.
"""

import importlib

from absl import app
from absl import flags
import tensorflow as tf

from morph_net import errors
from morph_net.keras import model_regularizer as model_regularizer_lib
from morph_net.network_regularizers import registry
from morph_net.structure import structure_files

__all__ = ['define_flags', 'load_builder', 'restore_checkpoint', 'export',
           'CheckpointMismatchError', 'main']

FLAGS = flags.FLAGS
# Raised by restore_checkpoint; a morph_net.errors.Error and a ValueError.
CheckpointMismatchError = errors.CheckpointMismatchError


def define_flags():
  """Defines the command line flags (only when run as a program, so
  that importing this module next to other absl programs is safe)."""
  flags.DEFINE_string('model', None, 'Saved .keras model.')
  flags.DEFINE_string('builder', None, "'module:function' returning a built "
                      'Keras model (use with --checkpoint).')
  flags.DEFINE_string('checkpoint', None, 'TF checkpoint prefix written by '
                      'tf.train.Checkpoint(model=...).')
  flags.DEFINE_multi_string('gin_file', [], 'Gin files configuring the builder.')
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings.')
  flags.DEFINE_string('regularizer', 'GammaFlopsRegularizer',
                      'Network regularizer class name.')
  flags.DEFINE_float('threshold', 1e-3, 'Alive threshold (gamma or group '
                     'lasso).')
  flags.DEFINE_string('output', None, 'Structure JSON to write.')


def load_builder(spec):
  """Imports 'module:function'.

  Raises:
    InvalidArgumentError: for a spec without ':'.
  """
  if ':' not in spec:
    raise errors.InvalidArgumentError(
        "Invalid value for flag --builder. Expected 'module:function'. "
        'Received: %r' % spec)
  module_name, fn_name = spec.split(':', 1)
  return getattr(importlib.import_module(module_name), fn_name)


def restore_checkpoint(model, checkpoint):
  """Restores `model` from a tf.train.Checkpoint(model=...) prefix.

  Raises:
    CheckpointMismatchError: naming the variables that are missing from the
      checkpoint or whose shapes disagree.
  """
  try:
    status = tf.train.Checkpoint(model=model).read(checkpoint)
    status.assert_existing_objects_matched()
  except AssertionError as e:
    unmatched = [v.path for v in model.weights]
    raise CheckpointMismatchError(
        'Checkpoint %s does not contain every variable of model %r (%s). The '
        'builder must build the model that was trained. Model variables: '
        '%s...' % (checkpoint, model.name, str(e).splitlines()[0][:300],
                   unmatched[:5])) from e
  except ValueError as e:
    raise CheckpointMismatchError(
        'Checkpoint %s disagrees with model %r: %s. The builder must build '
        'the model (same widths) that was trained.' %
        (checkpoint, model.name, str(e).splitlines()[-1])) from e
  return status


def export(model, output, regularizer_class=None, threshold=1e-3):
  """Writes the alive counts of a model's regularizer as a structure JSON.

  Args:
    model: a built Keras model (a regularizer is built on it), or a
      `ModelRegularizer` whose alive counts are written as they are.
    output: the JSON file to write (atomically; sorted keys, indent 2).
    regularizer_class: with a model, the network regularizer class
      (default GammaFlopsRegularizer).
    threshold: with a model, the regularizer's alive threshold.

  Returns:
    {layer name: alive count}.
  """
  regularizer = (model if isinstance(model,
                                     model_regularizer_lib.ModelRegularizer)
                 else model_regularizer_lib.model_regularizer(
                     model, regularizer_class, threshold))
  counts = regularizer.alive_counts()
  structure_files.write_structure(counts, output)
  return counts


def main(argv):
  del argv
  if not FLAGS.output:
    raise app.UsageError('--output is required.')
  if bool(FLAGS.model) == bool(FLAGS.builder):
    raise app.UsageError('Pass exactly one of --model and --builder.')
  if FLAGS.model:
    import keras  # pylint: disable=g-import-not-at-top
    model = keras.saving.load_model(FLAGS.model, compile=False)
  else:
    if FLAGS.gin_file or FLAGS.gin_param:
      import gin  # pylint: disable=g-import-not-at-top
      gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    model = load_builder(FLAGS.builder)()
    if FLAGS.checkpoint:
      restore_checkpoint(model, FLAGS.checkpoint)
  cls = registry.get_regularizer_class(FLAGS.regularizer)
  counts = export(model, FLAGS.output, cls, FLAGS.threshold)
  print('Wrote %d layers to %s.' % (len(counts), FLAGS.output))


if __name__ == '__main__':
  define_flags()
  app.run(main)
