"""CostCalculator: sums a resource function over the ops of a network."""

from typing import Callable, Optional, Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_util
from morph_net.network_regularizers import resource_function as rf


class CostCalculator(object):
  """Computes the cost and the regularization term of a network.

  For each op, the alive counts and regularization sums of its input and
  output channels come from the OpRegularizerManager; channels without a
  regularizer count as alive with zero regularization.

  Args:
    op_regularizer_manager: the OpRegularizerManager of the network.
    resource_function: a function of `resource_function`'s signature.
    batch_size: passed to the resource function, if not None.
  """

  def __init__(self, op_regularizer_manager, resource_function: Callable,
               batch_size: Optional[int] = None):
    self._manager = op_regularizer_manager
    self._resource_function = resource_function
    self._batch_size = batch_size
    self._cache = {}  # (op, start, size) -> terms, per _total call.

  def get_cost(self, ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the cost with dead channels removed (float32 scalar)."""
    return self._total(False, ops)

  def get_regularization_term(self,
                              ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the regularization term (float32 scalar)."""
    return self._total(True, ops)

  def _total(self, is_regularization, ops):
    ops = self._manager.ops if ops is None else list(ops)
    with self._manager.graph.as_default(), tf.name_scope('morph_net_cost'):
      total = 0.0
      costed = getattr(self._resource_function, 'costed_op_types',
                       rf.COSTED_OP_TYPES)
      self._cache = {}
      for op in ops:
        if op.type not in costed:
          continue
        terms = self._channel_terms(op)
        if terms is None:
          continue
        kwargs = {} if self._batch_size is None else {
            'batch_size': self._batch_size}
        value = self._resource_function(op, is_regularization, *terms,
                                        **kwargs)
        if isinstance(value, tf.Tensor):
          value = tf.cast(value, tf.float32)
        total = total + value
      return tf.cast(total, tf.float32)

  def _channel_terms(self, op):
    """Returns (alive_in, alive_out, reg_in, reg_out) or None to skip."""
    output_terms = self._terms(op.outputs[0]) if op.outputs else None
    if output_terms is None:
      if op.type in rf.WEIGHTED_OP_TYPES:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of output channels (shape %s), so '
            'its cost cannot be computed. Give the network input a static '
            'shape.' % (op_handler_util.describe_op(op), op.outputs[0].shape))
      return None
    if op.type not in rf.WEIGHTED_OP_TYPES:
      # Element-wise ops: input channels are the output channels.
      return (output_terms[0], output_terms[0], output_terms[1],
              output_terms[1])
    input_tensor = rf.input_activation(op)
    transposed = op.type == 'MatMul' and op.get_attr('transpose_a')
    input_terms = None if transposed else self._terms(input_tensor)
    if input_terms is None:
      channels = (op.inputs[1].shape[-2] if transposed else
                  op_handler_util.get_num_channels(input_tensor))
      if channels is None:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of input channels (input %s with '
            'shape %s). Give the network input a static channel dimension.'
            % (op_handler_util.describe_op(op), input_tensor.name,
               input_tensor.shape))
      input_terms = (int(channels), 0.0)
    return (input_terms[0], output_terms[0], input_terms[1], output_terms[1])

  def _terms(self, tensor):
    """Returns (alive count, regularization sum) of a tensor's channels."""
    channels = op_handler_util.get_num_channels(tensor)
    if channels is None:
      return None
    channel_range = self._manager.channel_range(tensor)
    if channel_range is None:
      return (channels, 0.0)
    op, start, size = channel_range
    key = (op, start, size)
    if key not in self._cache:
      self._cache[key] = self._alive_and_regularization(op, start, size)
    return self._cache[key]

  def _alive_and_regularization(self, op, start, size):
    """(alive count, regularization sum) of channels [start, +size) of op."""
    regularizer = self._manager.get_regularizer(op)
    if regularizer is None:
      return (size, 0.0)
    alive = regularizer.alive_vector
    reg = regularizer.regularization_vector
    if start != 0 or size != self._manager.get_num_channels(op):
      alive = alive[start:start + size]
      reg = reg[start:start + size]
    return (tf.reduce_sum(tf.cast(alive, tf.float32)), tf.reduce_sum(reg))
