"""Errors raised by MorphNet.

Every error the library raises derives from `Error`, so callers can catch the
library's failures without catching unrelated ones. The concrete classes also
derive from the built-in exception a caller would expect (`ValueError` for bad
arguments or unsupported graphs).
"""

__all__ = ['Error', 'InvalidArgumentError', 'UnsupportedGraphError',
           'NoSourceOpsError', 'MissingDependencyError',
           'UnsupportedModelError', 'StructureError', 'MissingWidthError',
           'WeightTransferError', 'CheckpointMismatchError']


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


class UnsupportedModelError(Error, TypeError):
  """A Keras model of a kind the operation cannot handle (e.g. subclassed)."""


class StructureError(Error, ValueError):
  """A structure {layer name: width} does not fit the model it is applied to."""


class MissingWidthError(StructureError, KeyError):
  """A layer has no width in a structure read with fallback_rule='strict'."""


class WeightTransferError(Error, ValueError):
  """Weights cannot be copied into a rebuilt model; the message says why."""


class CheckpointMismatchError(Error, ValueError):
  """A checkpoint does not match the model built to restore it."""
