"""Network regularizer classes by name, and the name of their threshold.

Command lines and gin configs name regularizers by class name; the three
source families call their alive threshold differently (gamma_threshold,
threshold, alive_threshold). Both lookups live here so that every tool
answers them the same way.
"""

import difflib
import inspect
from typing import Any, Dict, Optional

from morph_net import errors
from morph_net.network_regularizers import activation_regularizer
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import model_size_regularizer

__all__ = ['alive_threshold', 'check_arguments', 'get_regularizer_class',
           'threshold_kwargs']

_MODULES = (flop_regularizer, model_size_regularizer, latency_regularizer,
            activation_regularizer, logistic_sigmoid_regularizer)
# Names the families give their alive threshold, in the order looked for.
_THRESHOLD_ARGS = ('gamma_threshold', 'threshold', 'alive_threshold')


def _classes():
  classes = {}
  for module in _MODULES:
    for attr in getattr(module, '__all__', dir(module)):
      value = getattr(module, attr)
      if (attr.endswith('Regularizer') and inspect.isclass(value) and
          value.__module__ == module.__name__):
        classes[attr] = value
  return classes


def get_regularizer_class(name: str):
  """Returns the network regularizer class called `name`.

  Args:
    name: a class name such as 'GammaFlopsRegularizer'.

  Returns:
    The class.

  Raises:
    InvalidArgumentError: for an unknown name, with a "Did you mean" hint.
  """
  classes = _classes()
  if name not in classes:
    close = difflib.get_close_matches(name, list(classes), n=1)
    raise errors.InvalidArgumentError(
        'Invalid value for argument `regularizer`. Expected one of %s.%s '
        'Received: regularizer=%r' % (
            ', '.join(sorted(classes)),
            (' Did you mean %r?' % close[0]) if close else '', name))
  return classes[name]


def alive_threshold(regularizer_class, kwargs: Dict[str, object]) -> float:
  """The alive threshold a regularizer class is built with from `kwargs`.

  Args:
    regularizer_class: a network regularizer class, or its name.
    kwargs: the arguments it is built with (its threshold argument, or the
      class's default when absent).

  Returns:
    The threshold, a float.

  Raises:
    InvalidArgumentError: if the class takes none of the known threshold
      arguments, or the argument is missing and has no default.
  """
  if isinstance(regularizer_class, str):
    regularizer_class = get_regularizer_class(regularizer_class)
  name = next(iter(threshold_kwargs(regularizer_class, 0.0)))
  if name in kwargs:
    return float(kwargs[name])
  default = inspect.signature(regularizer_class).parameters[name].default
  if default is inspect.Parameter.empty:
    raise errors.InvalidArgumentError(
        'Missing argument `%s` of %s: it has no default.' %
        (name, regularizer_class.__name__))
  return float(default)


def threshold_kwargs(regularizer_class,
                     threshold: Optional[float]) -> Dict[str, float]:
  """Returns {<the class's threshold argument>: threshold} ({} for None).

  Args:
    regularizer_class: a network regularizer class, or its name.
    threshold: the alive threshold.

  Raises:
    InvalidArgumentError: if the class takes none of the known arguments.
  """
  if threshold is None:
    return {}
  if isinstance(regularizer_class, str):
    regularizer_class = get_regularizer_class(regularizer_class)
  parameters = inspect.signature(regularizer_class).parameters
  for name in _THRESHOLD_ARGS:
    if name in parameters:
      return {name: threshold}
  raise errors.InvalidArgumentError(
      'Invalid value for argument `regularizer_class`. Expected a network '
      'regularizer taking one of the arguments %s. Received: '
      'regularizer_class=%s' % (', '.join(_THRESHOLD_ARGS),
                                regularizer_class.__name__))


# Arguments the Keras bridge (or a TF1 caller) gives every regularizer.
_BOUNDARY_ARGS = ('output_boundary', 'input_boundary')


def check_arguments(regularizer_class, kwargs: Dict[str, Any]) -> None:
  """Checks `kwargs` against the class's arguments (boundaries aside).

  Args:
    regularizer_class: a network regularizer class.
    kwargs: the arguments it will get besides the boundaries.

  Raises:
    InvalidArgumentError: for an argument the class does not take, a
      required one missing (the message lists the class's arguments and
      names its alive threshold), or a negative or non-finite threshold.
  """
  for name in _THRESHOLD_ARGS:
    if name in kwargs:
      errors.check_number(name, kwargs[name])
  try:
    parameters = inspect.signature(regularizer_class).parameters
  except (TypeError, ValueError):
    return  # No readable signature: the class checks for itself.
  takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
  named = [n for n, p in parameters.items() if n not in _BOUNDARY_ARGS and
           p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  unknown = [] if takes_any else sorted(
      set(kwargs) - set(named) - set(_BOUNDARY_ARGS))
  missing = [n for n in named if n not in kwargs and
             parameters[n].default is inspect.Parameter.empty]
  if not unknown and not missing:
    return
  threshold = [n for n in _THRESHOLD_ARGS if n in parameters]
  problem = ('takes no argument %s' % ', '.join(map(repr, unknown))
             if unknown else 'needs the argument %s' % ', '.join(
                 map(repr, missing)))
  raise errors.InvalidArgumentError(
      '%s %s. Its arguments: %s%s.' % (
          regularizer_class.__name__, problem, ', '.join(named),
          ('; its alive threshold is %r' % threshold[0]) if threshold
          else ''))
