"""Errors raised by MorphNet.

Every error the library raises derives from `Error`, so callers can catch the
library's failures without catching unrelated ones. The concrete classes also
derive from the built-in exception a caller would expect (`ValueError` for bad
arguments or unsupported graphs).
"""

__all__ = ['Error', 'InvalidArgumentError', 'InvalidArgumentTypeError',
           'UnsupportedGraphError', 'NoSourceOpsError',
           'AnalysisNotConvergedError', 'MissingDependencyError',
           'KeyLookupError', 'NotReadyError', 'UnsupportedModelError',
           'StructureError', 'MissingWidthError', 'WeightTransferError',
           'CheckpointMismatchError', 'ProfileError',
           'ResourceNotBoundError', 'check_number']


class Error(Exception):
  """Base class of all MorphNet errors."""


class InvalidArgumentError(Error, ValueError):
  """An argument has a bad type or value (for example a boundary that is not an op)."""


class InvalidArgumentTypeError(Error, TypeError):
  """An argument has the wrong type (for example a string where a list of regexes is expected)."""


class UnsupportedGraphError(Error, ValueError):
  """The graph has an op the analysis cannot handle; the message says which and why."""


class AnalysisNotConvergedError(UnsupportedGraphError, RuntimeError):
  """The op handlers kept re-queueing ops without settling their groups.

  Raised by `OpRegularizerManager` when its iteration limit is reached or
  when the queue cycles without any change. It is also a `RuntimeError`,
  which is what the original MorphNet raised in that case.
  """


class NoSourceOpsError(Error, ValueError):
  """A network regularizer found no op that can be regularized."""


class MissingDependencyError(Error, ImportError):
  """An optional dependency (tf_slim, tf_keras, matplotlib) is not installed."""


class KeyLookupError(Error, KeyError):
  """A name is missing from, or ambiguous in, a table the caller gave.

  For example an op name a strict parameterization must contain, a function
  name missing from a `ConfigurableOps` function table, or an unknown
  fallback rule. A `KeyError`, as the original MorphNet raised there.
  """

  def __str__(self):
    # KeyError.__str__ quotes its argument; show the message as written.
    return str(self.args[0]) if self.args else ''


class NotReadyError(Error, RuntimeError):
  """A method was called before the step it depends on (the message says which)."""


class UnsupportedModelError(Error, TypeError):
  """A Keras model of a kind the operation cannot handle (e.g. subclassed)."""


class StructureError(Error, ValueError):
  """A structure {layer name: width} does not fit the model it is applied to."""


class MissingWidthError(StructureError, KeyLookupError):
  """A layer has no width in a structure read with fallback_rule='strict'."""


class WeightTransferError(Error, ValueError):
  """Weights cannot be copied into a rebuilt model; the message says why."""


class CheckpointMismatchError(Error, ValueError):
  """A checkpoint does not match the model built to restore it."""


class ProfileError(Error, ValueError):
  """A latency profile is malformed, or lacks an op kind a cost needs.

  The message names the file (if any) and the field, for example
  `kinds.depthwise.ns_per_byte`, and says how to fix it.
  """


class ResourceNotBoundError(Error, AttributeError):
  """A resource function was asked of a class whose resource needs arguments.

  For example `GammaLatencyRegularizer.resource_function`: latency depends on
  the hardware and the batch size, which only an instance has.
  """


def check_number(name: str, value, allow_zero: bool = True) -> float:
  """`value` as a float, if it is a finite number >= 0 (> 0 without zero).

  Args:
    name: the argument's name, for the message.
    value: what the caller passed.
    allow_zero: whether 0 is valid.

  Returns:
    float(value).

  Raises:
    InvalidArgumentError: for a value that is not a number, not finite,
      negative, or zero when `allow_zero` is False; the message names the
      argument and the value received.
  """
  import math  # pylint: disable=g-import-not-at-top
  try:
    number = received = float(value)
  except (TypeError, ValueError):
    number, received = float('nan'), value
  if not math.isfinite(number) or number < 0 or (
      number == 0 and not allow_zero):
    raise InvalidArgumentError(
        'Invalid value for argument `%s`. Expected a %s finite number. '
        'Received: %s=%r' % (name, 'non-negative' if allow_zero else
                             'positive', name, received))
  return number
