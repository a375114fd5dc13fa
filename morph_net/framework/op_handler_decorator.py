"""OpHandlerDecorator: wraps the regularizers a source handler creates.

A regularizer decorator is an OpRegularizer class whose constructor takes the
regularizer to decorate as first argument, plus keyword parameters. Network
regularizers accept it as `regularizer_decorator` and `decorator_parameters`
and wrap every source handler with this class.
"""

from morph_net.framework import generic_regularizers
from morph_net.framework import op_handler


class OpHandlerDecorator(op_handler.OpHandler):
  """Delegates to a handler and decorates the regularizers it creates.

  Args:
    default_source_op_handler: the OpHandler to wrap.
    regularizer_decorator: OpRegularizer class taking (regularizer, **params).
    decorator_parameters: dict of keyword arguments for the decorator.
  """

  def __init__(self, default_source_op_handler, regularizer_decorator,
               decorator_parameters=None):
    self._handler = default_source_op_handler
    self._decorator = regularizer_decorator
    self._parameters = dict(decorator_parameters or {})

  @property
  def is_source_op(self):
    return self._handler.is_source_op

  @property
  def is_passthrough(self):
    return self._handler.is_passthrough

  def is_source(self, op):
    return self._handler.is_source(op)

  def assign_grouping(self, op, op_reg_manager):
    self._handler.assign_grouping(op, op_reg_manager)

  def get_num_channels(self, op):
    return self._handler.get_num_channels(op)

  def get_output_channel_range(self, op, output_index):
    return self._handler.get_output_channel_range(op, output_index)

  def create_regularizer(self, op_slice):
    regularizer = self._handler.create_regularizer(op_slice)
    if regularizer is None:
      return None
    return self._decorator(regularizer, **self._parameters)


class ScalingRegularizer(generic_regularizers.OpRegularizer):
  """A regularizer decorator that multiplies the regularization vector.

  Useful to weight some sources more than others. The alive vector is kept.

  Args:
    regularizer: the OpRegularizer to decorate.
    scale: the factor.
  """

  def __init__(self, regularizer, scale: float = 1.0):
    self._regularizer = regularizer
    self._regularization_vector = regularizer.regularization_vector * scale

  @property
  def regularization_vector(self):
    return self._regularization_vector

  @property
  def alive_vector(self):
    return self._regularizer.alive_vector
