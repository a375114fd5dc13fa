"""Where a command-line program's model comes from, and what it needs.

A saved `.keras` file, or a builder function (optionally gin-configured)
whose model gets trained weights from a Keras weights file (`.weights.h5`,
what `ModelCheckpoint(save_weights_only=True)` writes) or a TF checkpoint.
Every failure is a `morph_net.errors` error naming the flag and the fix.
"""

import importlib
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from morph_net import errors
from morph_net.compat import keras as compat

__all__ = ['WEIGHT_FILE_SUFFIXES', 'parse_input_shape', 'check_exists', 'load_builder',
           'restore_checkpoint', 'load_model', 'check_input_size']

# Files restored with model.load_weights; other paths are TF checkpoints.
WEIGHT_FILE_SUFFIXES = ('.weights.h5', '.h5', '.keras')


def parse_input_shape(text: str) -> Tuple[int, ...]:
  """'H,W,C' -> (H, W, C).

  Raises:
    InvalidArgumentError: unless `text` is comma-separated positive integers.
  """
  try:
    shape = tuple(int(part) for part in text.split(','))
  except ValueError:
    shape = ()
  if not shape or any(d <= 0 for d in shape):
    raise errors.InvalidArgumentError(
        'Invalid value for flag --input_shape. Expected the input shape '
        'without batch as positive integers, e.g. 224,224,3. Received: %r' %
        text)
  return shape


def check_exists(path: str, flag: str) -> str:
  """Returns `path`.

  Raises:
    InvalidArgumentError: if no file or directory is at `path`.
  """
  if not tf.io.gfile.exists(path):
    raise errors.InvalidArgumentError(
        'Invalid value for flag --%s: no such file: %s' % (flag, path))
  return path


def load_builder(spec: str) -> Callable:
  """Imports the function of a 'module:function' spec.

  Raises:
    InvalidArgumentError: for a spec without ':', a module that cannot be
      imported or a name the module does not define.
  """
  if ':' not in spec:
    raise errors.InvalidArgumentError(
        "Invalid value for flag --builder. Expected 'module:function'. "
        'Received: %r' % spec)
  module_name, function_name = spec.split(':', 1)
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise errors.InvalidArgumentError(
        'Invalid value for flag --builder: cannot import module %r (%s).' %
        (module_name, e)) from e
  if not hasattr(module, function_name):
    raise errors.InvalidArgumentError(
        'Invalid value for flag --builder: module %r has no %r.' %
        (module_name, function_name))
  return getattr(module, function_name)


def _restore_weights_file(model, path: str) -> None:
  try:
    model.load_weights(path)
  except (ValueError, KeyError) as e:
    raise errors.CheckpointMismatchError(
        'Weights file %s does not fit model %r: %s. The builder must build '
        'the model (same layers and widths) that was trained.' %
        (path, model.name, ' '.join(str(e).split())[:300])) from e


def _restore_tf_checkpoint(model, prefix: str):
  try:
    status = tf.train.Checkpoint(model=model).read(prefix)
    status.assert_existing_objects_matched()
  except AssertionError as e:
    unmatched = [v.path for v in model.weights]
    raise errors.CheckpointMismatchError(
        'Checkpoint %s does not contain every variable of model %r (%s). The '
        'builder must build the model that was trained. Model variables: '
        '%s...' % (prefix, model.name, str(e).splitlines()[0][:300],
                   unmatched[:5])) from e
  except ValueError as e:
    raise errors.CheckpointMismatchError(
        'Checkpoint %s disagrees with model %r: %s. The builder must build '
        'the model (same widths) that was trained.' %
        (prefix, model.name, str(e).splitlines()[-1])) from e
  return status


def restore_checkpoint(model, checkpoint: str):
  """Restores `model`'s weights from a Keras weights file or a TF checkpoint.

  Args:
    model: the built Keras model.
    checkpoint: a Keras weights file (`.weights.h5`, `.h5`, `.keras`), or a
      TF checkpoint prefix (or directory) of `tf.train.Checkpoint(model=...)`.

  Returns:
    The TF checkpoint's load status, or None for a weights file.

  Raises:
    InvalidArgumentError: if there is no such file or checkpoint.
    CheckpointMismatchError: naming the variables that are missing from the
      checkpoint or whose shapes disagree.
  """
  if checkpoint.endswith(WEIGHT_FILE_SUFFIXES):
    _restore_weights_file(model, check_exists(checkpoint, 'checkpoint'))
    return None
  prefix = checkpoint
  if tf.io.gfile.isdir(checkpoint):
    prefix = tf.train.latest_checkpoint(checkpoint)
  if not prefix or not tf.io.gfile.exists(prefix + '.index'):
    raise errors.InvalidArgumentError(
        'Invalid value for flag --checkpoint: no TF checkpoint at %s (a '
        'prefix such as /train/ckpt-100, whose .index file exists, or a '
        'directory holding one) and no Keras weights file (%s).' %
        (checkpoint, ', '.join(WEIGHT_FILE_SUFFIXES)))
  return _restore_tf_checkpoint(model, prefix)


def load_model(model_path: Optional[str] = None, builder: Optional[str] = None,
               checkpoint: Optional[str] = None,
               gin_files: Sequence[str] = (), gin_params: Sequence[str] = ()):
  """The model of --model, or of --builder with its --checkpoint weights.

  A saved model is loaded without its compile state (`compile=False`), so
  a model compiled with MorphNet's loss, or any custom loss, loads.

  Returns:
    The Keras model.

  Raises:
    InvalidArgumentError: for a missing or unreadable file, or a bad
      builder; CheckpointMismatchError as `restore_checkpoint`.
  """
  if model_path:
    check_exists(model_path, 'model')
    keras = compat.get_keras()
    try:
      return keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError, TypeError) as e:
      raise errors.InvalidArgumentError(
          'Invalid value for flag --model: cannot load %s as a %s model: %s' %
          (model_path, keras.__name__, ' '.join(str(e).split())[:300])) from e
  if gin_files or gin_params:
    for path in gin_files:
      check_exists(path, 'gin_file')
    import gin  # pylint: disable=g-import-not-at-top
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_params))
  model = load_builder(builder)()
  if checkpoint:
    restore_checkpoint(model, checkpoint)
  return model


def check_input_size(model, input_shapes: Sequence[str]) -> Optional[List]:
  """The --input_shape values as shapes, if the model needs them.

  Args:
    model: the Keras model.
    input_shapes: the --input_shape values ('H,W,C'), possibly none.

  Returns:
    None (the model's own input shapes are used), one shape, or a list of
    shapes for several values.

  Raises:
    InvalidArgumentError: if the model does not fix its input size (or has
      no recorded inputs, a subclassed model) and no --input_shape is given.
  """
  if input_shapes:
    shapes = [parse_input_shape(text) for text in input_shapes]
    return shapes[0] if len(shapes) == 1 else shapes
  try:
    inputs = list(model.inputs or [])
  except (AttributeError, ValueError):
    inputs = []
  unknown = [tuple(t.shape) for t in inputs if None in tuple(t.shape)[1:]]
  if not inputs or unknown:
    raise errors.InvalidArgumentError(
        'Model %r (%s) has %s; costs depend on the spatial size. Pass '
        '--input_shape=H,W,C with the size you train or serve at.' %
        (model.name, type(model).__name__,
         'an unknown input size %s' % (unknown[0],) if unknown else
         'no recorded input shape'))
  return None
