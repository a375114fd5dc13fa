"""Errors raised by MorphNet.

Every error the library raises derives from `Error`, so callers can catch the
library's failures without catching unrelated ones. The concrete classes also
derive from the built-in exception a caller would expect (`ValueError` for bad
arguments or unsupported graphs).
"""

__all__ = [
    'AnalysisNotConvergedError', 'Error', 'InvalidArgumentError',
    'InvalidArgumentTypeError', 'MissingDependencyError', 'NoSourceOpsError',
    'UnsupportedGraphError'
]


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
