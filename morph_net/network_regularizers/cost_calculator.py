"""CostCalculator: sums a resource function over the ops of a network.

For every costed op the calculator reads, from the OpRegularizerManager, how
many of the op's input and output channels are alive and the sum of their
regularization vectors, and gives them to the resource function (see
`resource_function`). The total is the network's cost (`get_cost`) or its
regularization term (`get_regularization_term`).

What the calculator needs from the manager: `ops`, `graph`,
`get_regularizer(op)`, `get_num_channels(op)` and `channel_range(tensor)`
(the producer op and the range of its channels a tensor holds). Channels
without a regularizer count as alive with zero regularization.

Graph size: alive counts and regularization sums of all channel ranges are
computed together (`channel_sums`), and a resource function that exposes its
coefficients (`forms`, see `cost_forms`; all built-in ones do) is evaluated
for all ops at once with a few vector ops, so building a term does not grow
with the number of ops. Other resource functions are called once per op.

The original's op type tuples and `get_input_activation` live in `op_types`
and are reachable from here, where the original had them.
"""

from typing import Callable, Optional, Sequence

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.framework import function_calls
from morph_net.framework import op_handler_util
from morph_net.framework import op_vocabulary
from morph_net.network_regularizers import channel_sums
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import op_types
# The original's names in this module.
from morph_net.network_regularizers.op_types import CONV2D_OPS
from morph_net.network_regularizers.op_types import CONV3D_OPS
from morph_net.network_regularizers.op_types import CONV_OPS
from morph_net.network_regularizers.op_types import FLOP_OPS
from morph_net.network_regularizers.op_types import get_input_activation
from morph_net.network_regularizers.op_types import SUPPORTED_OPS

__all__ = ['CONV2D_OPS', 'CONV3D_OPS', 'CONV_OPS', 'FLOP_OPS', 'SUPPORTED_OPS',
           'CostCalculator', 'get_input_activation']


def _has_dynamic_shapes(graph) -> bool:
  """TF1 graphs run with their inputs fed; traced functions may not be."""
  return not hasattr(graph, 'captures')  # FuncGraphs have captures.


def _is_number(value) -> bool:
  return isinstance(value, (int, float))


def _uncounted_arithmetic(op) -> Optional[str]:
  """Why the convs or matmuls `op` runs are not counted, or None.

  Calls whose body is not one conv or matmul, While loops whose body has
  some (recurrent layers), and Einsums that are not two-operand
  contractions with static sizes hide arithmetic no cost form reads.
  """
  if op.type in op_types.CALL_OP_TYPES:
    if (op_types.costed_op(op) is op and
        function_calls.body_has_weighted_ops(op)):
      return ('the function it calls is not a single conv or matmul fed by '
              "the call's inputs")
  elif op.type in op_vocabulary.LOOP_OP_TYPES:
    if function_calls.body_has_weighted_ops(op, 'body'):
      return ('its loop body has convs or matmuls (a recurrent layer), '
              'which the graph analysis does not count')
  elif op.type in op_types.EINSUM_OP_TYPES and not cost_forms.is_flop_op(op):
    return ('its equation %r is not a two-operand contraction with static '
            'sizes' % op.get_attr('equation'))
  return None


class CostCalculator(object):
  """Computes the cost and the regularization term of a network.

  Args:
    op_regularizer_manager: the OpRegularizerManager of the network.
    resource_function: a function of `resource_function`'s signature.
    batch_size: passed to the resource function as `batch_size`, if set.
    dynamic_shapes: whether spatial sizes unknown in the graph may be read at
      run time (tf.shape). Default: yes in TF1 graphs (their inputs are fed
      when the cost is evaluated), no in traced functions (the Keras bridge
      evaluates the cost without inputs), where such an op is an error.
  """

  def __init__(self, op_regularizer_manager, resource_function: Callable,
               batch_size: Optional[int] = None,
               dynamic_shapes: Optional[bool] = None):
    self._manager = op_regularizer_manager
    self._resource_function = resource_function
    self._kwargs = {} if batch_size is None else {'batch_size': batch_size}
    self._dynamic_shapes = (_has_dynamic_shapes(op_regularizer_manager.graph)
                            if dynamic_shapes is None else dynamic_shapes)
    self._costed_types = getattr(resource_function, 'costed_op_types',
                                 op_types.COSTED_OP_TYPES)
    self._forms = getattr(resource_function, 'forms', None)
    self._sums = channel_sums.ChannelSums(op_regularizer_manager)
    self._rows = {}  # op -> (forms or None, input Ref, output Ref) or None.
    self._warned = set()
    self._warned_types = set()

  @property
  def resource_function(self) -> Callable:
    return self._resource_function

  def get_cost(self, ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the cost with dead channels removed (float32 scalar tensor).

    Args:
      ops: the ops to cost; None or empty for all ops of the manager.

    Raises:
      UnsupportedGraphError: for a conv or matmul with unknown channels, or
        (in traced functions) an unknown spatial size; the message names the
        op.
    """
    return self._total(False, ops)

  def get_regularization_term(self,
                              ops: Optional[Sequence[tf.Operation]] = None):
    """Returns the regularization term (float32 scalar tensor).

    Args:
      ops: the ops to include; None or empty for all ops of the manager.

    Raises:
      UnsupportedGraphError: see `get_cost`.
    """
    return self._total(True, ops)

  def _total(self, is_regularization, ops):
    ops = list(ops) if ops else self._manager.ops
    with self._manager.graph.as_default(), tf.name_scope('morph_net_cost'):
      vector_rows, per_op, number = {}, [], 0.0
      for op in ops:
        row = self._row(op)
        if row is None:
          continue
        forms, in_ref, out_ref = row
        if forms is None:
          per_op.append(row + (op,))
        elif forms:
          vector_rows.setdefault(len(forms), []).append(row)
      values = [self._vector_total(rows, is_regularization)
                for rows in vector_rows.values()]
      for _, in_ref, out_ref, op in per_op:
        alive_in, reg_in = self._sums.scalars(in_ref)
        alive_out, reg_out = self._sums.scalars(out_ref)
        values.append(self._resource_function(
            op, is_regularization, alive_in, alive_out, reg_in, reg_out,
            **self._kwargs))
      if not vector_rows and not per_op:
        logging.warning('No op among the %d given is costed by %s.', len(ops),
                        getattr(self._resource_function, '__name__',
                                self._resource_function))
      tensors = []
      for value in values:
        if _is_number(value):
          number += value
        else:
          tensors.append(tf.cast(value, tf.float32))
      if not tensors:
        return tf.constant(number, tf.float32)
      total = tensors[0] if len(tensors) == 1 else tf.add_n(tensors)
      return total + number if number else total

  def _vector_total(self, rows, is_regularization):
    """Total of rows whose forms have number coefficients.

    A Python number when no row reads regularized channels, else a float64
    scalar tensor built with a few vector ops.
    """
    if all(r[1].index is None and r[2].index is None for r in rows):
      return sum(cost_forms.evaluate(forms, is_regularization, in_ref.count,
                                     out_ref.count, 0.0, 0.0)
                 for forms, in_ref, out_ref in rows)
    alive_in, reg_in = self._sums.vectors([r[1] for r in rows])
    alive_out, reg_out = self._sums.vectors([r[2] for r in rows])
    return cost_forms.evaluate_rows([r[0] for r in rows], is_regularization,
                                    alive_in, alive_out, reg_in, reg_out)

  def _row(self, op):
    """(forms or None, input Ref, output Ref) of a costed op, or None."""
    if op not in self._rows:
      reason = _uncounted_arithmetic(op)
      if reason:
        self._warn_once_per_type(op, reason)
      self._rows[op] = (self._make_row(op) if not reason and
                        op.type in self._costed_types else None)
    return self._rows[op]

  def _make_row(self, op):
    out_ref = self._sums.ref(op.outputs[0]) if op.outputs else None
    if out_ref is None:
      if op.type in op_types.WEIGHTED_OP_TYPES:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of output channels (shape %s), so '
            'its cost cannot be computed. Give the network input a static '
            'channel dimension.' % (op_handler_util.describe_op(op),
                                    op.outputs[0].shape))
      self._warn_once(op, 'its output has no static channel dimension (shape '
                      '%s)' % (op.outputs[0].shape if op.outputs else None))
      return None
    if op.type not in op_types.WEIGHTED_OP_TYPES:
      # Element-wise ops: input channels are the output channels.
      in_ref, checked = out_ref, [('output', op.outputs[0])]
    else:
      in_ref, input_tensor = self._input_ref(op)
      checked = [('output', op.outputs[0]), ('input', input_tensor)]
    if not self._dynamic_shapes:
      self._check_static_sizes(op, checked)
    forms = self._forms(op, **self._kwargs) if self._forms else None
    if forms is not None and not all(
        _is_number(c) for f in forms for c in f[:3]):
      forms = None  # Run-time coefficients: evaluated per op.
    return (forms, in_ref, out_ref)

  def _input_ref(self, op):
    """(Ref of the input channels, input activation tensor) of a weighted op."""
    transposed = op.type == 'MatMul' and op.get_attr('transpose_a')
    input_tensor = op.inputs[0] if transposed else get_input_activation(op)
    in_ref = None if transposed else self._sums.ref(input_tensor)
    if in_ref is None:
      channels = tf.compat.dimension_value(
          op.inputs[1].shape[-2] if transposed else
          (input_tensor.shape[-1] if input_tensor.shape.rank else None))
      if channels is None:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown number of input channels (input %s with '
            'shape %s). Give the network input a static channel dimension.'
            % (op_handler_util.describe_op(op), input_tensor.name,
               input_tensor.shape))
      in_ref = channel_sums.Ref(None, int(channels))
    return in_ref, input_tensor

  @staticmethod
  def _check_static_sizes(op, tensors):
    """Raises if a spatial size the cost depends on is unknown in the graph."""
    for what, tensor in tensors:
      shape = tensor.shape
      if shape.rank is None or None in shape.as_list()[1:-1]:
        raise errors.UnsupportedGraphError(
            'Op %s has an unknown %s size (shape %s), so its cost cannot be '
            'computed without running the graph on an input. Build the model '
            'with a fixed input size, for example keras.Input(shape=(32, 32, '
            '3)).' % (op_handler_util.describe_op(op), what, shape))

  def _warn_once_per_type(self, op, reason):
    if op.type not in self._warned_types:
      self._warned_types.add(op.type)
      self._warn_once(op, reason)

  def _warn_once(self, op, reason):
    if op not in self._warned:
      self._warned.add(op)
      logging.warning('Op %s is not costed by %s: %s.',
                      op_handler_util.describe_op(op),
                      getattr(self._resource_function, '__name__',
                              'the resource function'), reason)
