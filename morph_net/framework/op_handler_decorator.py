"""OpHandlerDecorator: wraps the regularizers a source handler creates.

A regularizer decorator is an OpRegularizer class whose constructor takes the
regularizer to decorate as first argument, plus keyword parameters. Network
regularizers accept it as `regularizer_decorator` and `decorator_parameters`
and wrap every source handler with this class.
"""

from morph_net.framework import generic_regularizers
from morph_net.framework import op_handler

__all__ = ['OpHandlerDecorator', 'ScalingRegularizer']


class OpHandlerDecorator(op_handler.OpHandler):
  """Delegates to a handler and decorates the regularizers it creates.

  Args:
    handler: the OpHandler to wrap.
    regularizer_decorator: OpRegularizer class taking (regularizer, **params);
      None leaves the regularizers unchanged.
    decorator_parameters: dict of keyword arguments for the decorator.
  """

  def __init__(self, handler, regularizer_decorator=None,
               decorator_parameters=None):
    self._op_handler = handler
    self._regularization_decorator = regularizer_decorator
    self._decorator_parameters = dict(decorator_parameters or {})

  @property
  def is_source_op(self):
    return self._op_handler.is_source_op

  @property
  def is_passthrough(self):
    return self._op_handler.is_passthrough

  def is_source(self, op):
    is_source = getattr(self._op_handler, 'is_source', None)
    return self._op_handler.is_source_op if is_source is None else is_source(
        op)

  def assign_grouping(self, op, op_reg_manager):
    self._op_handler.assign_grouping(op, op_reg_manager)

  def get_output_channel_range(self, op, output_index):
    get_range = getattr(self._op_handler, 'get_output_channel_range', None)
    if get_range is None:
      return super().get_output_channel_range(op, output_index)
    return get_range(op, output_index)

  def create_regularizer(self, op_slice):
    """Returns the wrapped handler's regularizer, decorated.

    Args:
      op_slice: an OpSlice of a source op.

    Returns:
      The decorated OpRegularizer (or the wrapped handler's result unchanged
      when it is None or there is no decorator).
    """
    regularizer = self._op_handler.create_regularizer(op_slice)
    if regularizer is None or self._regularization_decorator is None:
      return regularizer
    return self._regularization_decorator(regularizer,
                                          **self._decorator_parameters)


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
