"""Network regularizer classes by name, and the name of their threshold.

Command lines and gin configs name regularizers by class name; the three
source families call their alive threshold differently (gamma_threshold,
threshold, alive_threshold). Both lookups live here so that every tool
answers them the same way.
"""

import difflib
import inspect
from typing import Dict, Optional

from morph_net import errors
from morph_net.network_regularizers import activation_regularizer
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import model_size_regularizer

__all__ = ['get_regularizer_class', 'threshold_kwargs']

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
