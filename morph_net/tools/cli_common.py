"""What the command-line programs share: the model and regularizer flags.

`export_structure` and `expand_structure` read a model from a saved `.keras`
file (`--model`) or from a builder function (`--builder`, optionally
gin-configured) with trained weights (`--checkpoint`: a TF checkpoint or a
Keras weights file; see `model_source`), and build a network regularizer
on it (`--regularizer`, `--threshold`, and `--hardware` / `--batch_size` for
latency).

Exit status, as absl programs: 0 on success; 1 for a usage error (absl's
own: an unknown or malformed flag, a missing or contradictory flag; absl
prints the usage); 2 when the inputs the flags name cannot be used (a
missing file, an unknown regularizer name, an unknown input size, a
structure that does not fit the model ...), with the reason on one line of
stderr and no traceback.
"""

import inspect
import os
import sys
from typing import Callable, List, Optional, Sequence

from absl import app
from absl import flags

from morph_net import errors
from morph_net.keras import model_regularizer
from morph_net.network_regularizers import registry
from morph_net.tools import model_source
from morph_net.tools import startup

__all__ = ['EXIT_USAGE', 'EXIT_INPUT', 'define_model_flags',
           'define_regularizer_flags', 'flag_module_name', 'check_model_flags',
           'regularizer_kwargs',
           'build_regularizer', 'model_from_flags', 'regularizer_from_flags',
           'run']

EXIT_USAGE = 1  # absl: flag parsing errors and app.UsageError.
EXIT_INPUT = 2  # The inputs named by the flags cannot be used.


def _valid_input_shapes(values: Sequence[str]) -> bool:
  for value in values:
    try:
      model_source.parse_input_shape(value)
    except errors.InvalidArgumentError as e:
      raise flags.ValidationError(str(e)) from e
  return True


def flag_module_name(name: str) -> str:
  """The module name absl lists a program's own flags under in --help
  (`sys.argv[0]` for `__main__`), for flags defined here on its behalf."""
  return sys.argv[0] if name == '__main__' else name


def define_model_flags(module_name: str, flag_values=flags.FLAGS) -> None:
  """Defines --model, --builder, --checkpoint, --gin_file, --gin_param and
  --input_shape as flags of `module_name` (see `flag_module_name`)."""
  kwargs = dict(flag_values=flag_values, module_name=module_name)
  flags.DEFINE_string(
      'model', None, 'Saved Keras model (.keras) to read; loaded without its '
      'compile state.', **kwargs)
  flags.DEFINE_string(
      'builder', None, "'module:function' returning the built Keras model "
      '(instead of --model).', **kwargs)
  flags.DEFINE_string(
      'checkpoint', None, 'With --builder: the trained weights, a Keras '
      'weights file (.weights.h5, as ModelCheckpoint(save_weights_only=True)'
      ' writes; .h5, .keras) or a TF checkpoint prefix written by '
      'tf.train.Checkpoint(model=...).', **kwargs)
  flags.DEFINE_multi_string('gin_file', [], 'Gin files configuring the '
                            'builder.', **kwargs)
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings for the builder.',
                            **kwargs)
  flags.DEFINE_multi_string(
      'input_shape', [], 'Input shape without batch, H,W,C (repeat for each '
      'input of a multi-input model); needed when the model does not fix '
      'its input size, e.g. Input((None, None, 3)). Costs depend on it.',
      **kwargs)
  flags.register_validator('input_shape', _valid_input_shapes,
                           flag_values=flag_values)


def define_regularizer_flags(module_name: str,
                             flag_values=flags.FLAGS) -> None:
  """Defines --regularizer, --threshold, --hardware and --batch_size as
  flags of `module_name`."""
  kwargs = dict(flag_values=flag_values, module_name=module_name)
  flags.DEFINE_string(
      'regularizer', 'GammaFlopsRegularizer', 'Network regularizer class '
      'name (e.g. GroupLassoFlopsRegularizer, GammaLatencyRegularizer); its '
      'resource is what is costed.', **kwargs)
  flags.DEFINE_float(
      'threshold', 1e-3, 'Alive threshold of the regularizer (|gamma|, group '
      'lasso norm or gate probability). The training job and the structure '
      'must use the same one.', **kwargs)
  flags.DEFINE_string(
      'hardware', None, 'Latency regularizers only: a device name of '
      'resource_function.PEAK_COMPUTE (e.g. V100) or a device profile path, '
      "passed to the regularizer's hardware= argument.",
      **kwargs)
  flags.DEFINE_integer(
      'batch_size', None, 'Latency regularizers only: the inference batch '
      'size (default 1).', lower_bound=1, **kwargs)


def regularizer_kwargs(regularizer_class, hardware: Optional[str],
                       batch_size: Optional[int]) -> dict:
  """The latency arguments of a regularizer class from the flags.

  Raises:
    app.UsageError: when a latency regularizer has no --hardware, or
      --hardware / --batch_size are given to another regularizer.
  """
  takes_hardware = 'hardware' in inspect.signature(
      regularizer_class).parameters
  if not takes_hardware:
    if hardware is not None or batch_size is not None:
      raise app.UsageError(
          '--hardware and --batch_size apply to latency regularizers; '
          '--regularizer=%s does not cost latency.' %
          regularizer_class.__name__)
    return {}
  if hardware is None:
    raise app.UsageError(
        '--regularizer=%s costs latency on a device: pass --hardware (a '
        'device name such as V100, or a device profile path).' %
        regularizer_class.__name__)
  return {'hardware': hardware, 'batch_size': batch_size or 1}


def build_regularizer(model, name: str, threshold: float,
                      input_shapes: Sequence[str] = (),
                      hardware: Optional[str] = None,
                      batch_size: Optional[int] = None
                      ) -> model_regularizer.ModelRegularizer:
  """A ModelRegularizer of the named class on `model`, from the flags.

  Raises:
    InvalidArgumentError: for an unknown regularizer name ("Did you mean
      ..."), an unknown input size, or a device the regularizer refuses;
      app.UsageError as `regularizer_kwargs`; NoSourceOpsError when the
      model has nothing the regularizer can use.
  """
  regularizer_class = registry.get_regularizer_class(name)
  kwargs = regularizer_kwargs(regularizer_class, hardware, batch_size)
  input_shape = model_source.check_input_size(model, input_shapes)
  return model_regularizer.model_regularizer(
      model, regularizer_class, threshold, input_shape=input_shape, **kwargs)


def check_model_flags(required: bool, flag_values=flags.FLAGS) -> bool:
  """Checks how the flags of `define_model_flags` are combined.

  Args:
    required: whether the program needs a model.
    flag_values: the parsed flags.

  Returns:
    Whether a model is named (--model or --builder).

  Raises:
    app.UsageError: for both --model and --builder, neither when required,
      or --checkpoint / --gin_file / --gin_param without --builder.
  """
  model, builder = flag_values.model, flag_values.builder
  if model and builder or (required and not (model or builder)):
    raise app.UsageError('Pass exactly one of --model and --builder.'
                         if required else
                         'Pass at most one of --model and --builder.')
  if not builder:
    for name in ('checkpoint', 'gin_file', 'gin_param'):
      if flag_values[name].value:
        raise app.UsageError(
            '--%s needs --builder (a saved --model holds its weights and '
            'configuration).' % name)
  return bool(model or builder)


def model_from_flags(flag_values=flags.FLAGS):
  """The model the flags of `define_model_flags` name (see
  `model_source.load_model`)."""
  return model_source.load_model(
      flag_values.model, flag_values.builder, flag_values.checkpoint,
      flag_values.gin_file, flag_values.gin_param)


def regularizer_from_flags(model, flag_values=flags.FLAGS
                           ) -> model_regularizer.ModelRegularizer:
  """The regularizer the flags of both `define_*_flags` name, on `model`."""
  return build_regularizer(model, flag_values.regularizer,
                           flag_values.threshold, flag_values.input_shape,
                           flag_values.hardware, flag_values.batch_size)


def run(main: Callable[[List[str]], Optional[int]]) -> None:
  """`absl.app.run(main)`; a MorphNet error exits with status 2 and one line.

  The line is `<program>: error: <message>` on stderr, without traceback.
  Logging is at WARNING unless --verbosity is given (`startup.run`).
  """
  program = os.path.basename(sys.argv[0]).replace('.py', '')

  def guarded(argv):
    try:
      return main(argv)
    except errors.Error as e:
      sys.stderr.write('%s: error: %s\n' % (program, ' '.join(str(e).split())))
      return EXIT_INPUT

  startup.run(guarded)
