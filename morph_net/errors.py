"""Errors raised by MorphNet.

Every error the library raises derives from `Error`, so callers can catch the
library's failures without catching unrelated ones. The concrete classes also
derive from the built-in exception a caller would expect (`ValueError` for bad
arguments or unsupported graphs).
"""

__all__ = [
    'Error', 'InvalidArgumentError', 'UnsupportedGraphError',
    'NoSourceOpsError', 'MissingDependencyError', 'ResourceNotBoundError',
]


class Error(Exception):
  """Base class of all MorphNet errors."""


class InvalidArgumentError(Error, ValueError):
  """An argument has a bad type or value (for example a boundary that is not an op)."""


class UnsupportedGraphError(Error, ValueError):
  """The graph has an op the analysis cannot handle; the message says which and why."""


class NoSourceOpsError(Error, ValueError):
  """A network regularizer found no op that can be regularized."""


class MissingDependencyError(Error, ImportError):
  """An optional dependency (tf_slim, tf_keras, matplotlib) is not installed."""


class ResourceNotBoundError(Error, AttributeError):
  """A resource function was asked of a class whose resource needs arguments.

  For example `GammaLatencyRegularizer.resource_function`: latency depends on
  the hardware and the batch size, which only an instance has.
  """
