"""What ConfigurableOps and its tf_keras layers share: VANISHED and the rules.

Private to `configurable_ops`, which exports these names; see its docstring.
Needs neither tf_slim nor tf_keras.
"""

import collections
import enum
import json
import numbers

import tensorflow as tf

from morph_net import errors

__all__ = ['VANISHED', 'FallbackRule', 'is_vanished', 'get_fallback_rule',
           'checked_parameterization', 'read_parameterization_file']

# The output of a vanished op: the float 0.0, so that TF arithmetic treats it
# as a zero (x + VANISHED is x).
VANISHED = 0.0


class FallbackRule(enum.Enum):
  """The width of an op missing from the parameterization.

  pass_through: the `num_outputs` the caller passed (the default).
  strict: none; it is an error (`errors.KeyLookupError`).
  zero: 0, so the op vanishes.
  """
  pass_through = 'pass_through'
  strict = 'strict'
  zero = 'zero'


def is_vanished(maybe_tensor) -> bool:
  """True if `maybe_tensor` is `VANISHED` (the float 0.0) or None."""
  return maybe_tensor is None or (isinstance(maybe_tensor, float) and
                                  maybe_tensor == VANISHED)


def get_fallback_rule(fallback_rule) -> FallbackRule:
  """Returns `fallback_rule` (a FallbackRule or its name) as a FallbackRule.

  Args:
    fallback_rule: a `FallbackRule` or one of 'pass_through', 'strict',
      'zero'.

  Returns:
    The FallbackRule.

  Raises:
    InvalidArgumentError: if it is neither a string nor a FallbackRule.
    KeyLookupError: if it is a string that names no rule.
  """
  names = [rule.name for rule in FallbackRule]
  if isinstance(fallback_rule, FallbackRule):
    return fallback_rule
  if not isinstance(fallback_rule, str):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `fallback_rule`. Expected a FallbackRule '
        'or one of the strings %s. Received: fallback_rule=%r (%s).' % (
            names, fallback_rule, type(fallback_rule).__name__))
  if fallback_rule not in FallbackRule.__members__:
    raise errors.KeyLookupError(
        'Unknown fallback_rule %r. Use one of %s.' % (fallback_rule, names))
  return FallbackRule[fallback_rule]


def checked_parameterization(parameterization):
  """Returns a dict copy of `parameterization` after checking its widths.

  Args:
    parameterization: {op name: width} or None (empty).

  Returns:
    A new {op name: width} dict.

  Raises:
    InvalidArgumentError: if it is not a mapping of op names to integer
      widths >= 0; the message names the op.
  """
  parameterization = parameterization or {}
  if not isinstance(parameterization, collections.abc.Mapping):
    raise errors.InvalidArgumentError(
        'A parameterization maps op names to widths, for example '
        '{"conv1/Conv2D": 16}. Received a %s.' %
        type(parameterization).__name__)
  for name, width in parameterization.items():
    if (isinstance(width, bool) or not isinstance(width, numbers.Integral) or
        width < 0):
      raise errors.InvalidArgumentError(
          'Bad width for op %r in the parameterization: %r (%s). A width is '
          'an integer number of output channels >= 0 (0 makes the op '
          'vanish).' % (name, width, type(width).__name__))
  return dict(parameterization)


def read_parameterization_file(filename):
  """Reads a JSON {op name: width} file, as the structure exporter writes it.

  Args:
    filename: a local or `tf.io.gfile` path.

  Returns:
    The decoded JSON (checked by `checked_parameterization` where used).

  Raises:
    InvalidArgumentError: if the file is not JSON.
  """
  with tf.io.gfile.GFile(filename, 'r') as f:
    text = f.read()
  try:
    return json.loads(text)
  except ValueError as e:
    raise errors.InvalidArgumentError(
        '%s is not a parameterization file: %s. Expected JSON {op name: '
        'width}, as StructureExporter writes it.' % (filename, e)) from e
