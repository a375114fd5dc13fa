"""LogisticSigmoidSourceOpHandler: probabilistic channel gates as sources.

Two graph patterns are sources:

* The original MorphNet's: an op of type 'LogisticSigmoidGating' (a graph
  function; first input the log-odds read [C], output the sampled mask [C]),
  which `activation_gating._logistic_sigmoid_sample` builds, and so does the
  gating layer when it trains in a tf.compat.v1 graph. The op groups like an
  element-wise op; the multiply by its mask is an ordinary grouping op that
  joins the mask's group with the gated channels, as in the original.
* This project's: a gate (see `morph_net.probabilistic_gating.
  activation_gating`) that multiplies its input x [..., C] by a per-channel
  mask [C] (or [1, ..., 1, C]) computed from a log-odds variable [C]. In the
  graph it is a `Mul(x, mask)` whose mask input derives, through ops on
  C-element tensors only, from exactly one variable read of shape [C],
  passing a `Sigmoid` (relaxed sample, probability) or a `Greater` (hard
  mask) on the way, and that depends on no data. The handler matches that
  structure in TF1 graphs and in traced Keras graphs (Keras 3 and tf_keras,
  training or inference mode) alike; names are not used.

Other `Mul` ops (batch norm scales, squeeze-and-excitation, whose gate depends
on the batch) behave as grouping ops.
"""

import collections
from typing import Optional

import tensorflow as tf

from morph_net.framework import graph_util
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps
from morph_net.op_regularizers import prob_gating_regularizer

__all__ = [
    'GATE_OP_TYPES', 'Gate', 'LogisticSigmoidSourceOpHandler',
    'ORIGINAL_GATE_OP_TYPE', 'find_log_odds', 'get_gate'
]

GATE_OP_TYPES = frozenset(['Mul'])
# The original MorphNet's gate: a function op (log_odds, noise, tau) -> mask.
ORIGINAL_GATE_OP_TYPE = 'LogisticSigmoidGating'
# Ops that turn log-odds into a mask: sigmoid (probability, relaxed sample)
# and comparisons (hard mask).
_MASK_OP_TYPES = frozenset(['Sigmoid', 'Greater', 'GreaterEqual'])
# Bound on the ops visited when looking for the log-odds of one mask.
_MAX_SEARCH_OPS = 64
# Bound on the ops a mask may depend on (it depends on variables only).
_MAX_DEPENDENCY_OPS = 256
# Producers of data: a mask that depends on them is not a gate (e.g. a
# squeeze-and-excitation multiply, whose scale depends on the example).
_DATA_OP_TYPES = frozenset([
    'Placeholder', 'PlaceholderWithDefault', '_Arg', 'IteratorGetNext',
    'IteratorGetNextSync', 'Conv2D', 'Conv3D', 'DepthwiseConv2dNative',
    'MatMul', 'BatchMatMulV2', 'BatchMatMulV3', 'Conv2DBackpropInput'])

Gate = collections.namedtuple('Gate', ['inputs', 'mask', 'log_odds'])


def _variable_key(tensor: tf.Tensor) -> str:
  base = graph_util.skip_forwarding_ops(tensor)
  if base.op.type == 'ReadVariableOp':
    return base.op.inputs[0].name
  return base.name


def _depends_on_variables_only(tensor: tf.Tensor) -> bool:
  """Whether `tensor` is computed from variables, constants and noise only."""
  stack, visited = [tensor.op], set()
  while stack:
    op = stack.pop()
    if op in visited:
      continue
    visited.add(op)
    if len(visited) > _MAX_DEPENDENCY_OPS:
      return False
    if op.type in _DATA_OP_TYPES:
      # Captured variables of traced functions are resource placeholders.
      if not op.outputs or op.outputs[0].dtype != tf.resource:
        return False
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return True


def find_log_odds(mask: tf.Tensor) -> Optional[tf.Tensor]:
  """Returns the log-odds variable read a gate mask is computed from, or None.

  Args:
    mask: the mask input of a gating multiply, shaped [C] or [1, ..., 1, C].

  Returns:
    The float tensor [C] reading the log-odds variable, when the mask derives
    (through C-element tensors) from exactly one variable, via a Sigmoid or a
    Greater op, and depends on no data (inputs, convolutions, matmuls); None
    otherwise, and None when the mask comes from an op of the original's
    type 'LogisticSigmoidGating' (that op is the source then).
  """
  channels = mask.shape[-1] if mask.shape.rank else None
  if channels is None:
    return None
  stack, visited, variables, saw_mask_op = [mask], set(), {}, False
  while stack:
    tensor = stack.pop()
    if (not graph_util.is_channel_vector(tensor, channels) or
        tensor.op in visited):
      continue
    if tensor.op.type == ORIGINAL_GATE_OP_TYPE:
      # The original's gate op is the source; a multiply by its mask groups.
      return None
    visited.add(tensor.op)
    if len(visited) > _MAX_SEARCH_OPS:
      return None
    if graph_util.reads_variable(tensor):
      if tensor.dtype.is_floating and tensor.shape.rank == 1:
        variables.setdefault(_variable_key(tensor), tensor)
      continue
    if tensor.op.type in _MASK_OP_TYPES:
      saw_mask_op = True
    stack.extend(tensor.op.inputs)
  if not saw_mask_op or len(variables) != 1:
    return None
  if not _depends_on_variables_only(mask):
    return None
  return next(iter(variables.values()))


def get_gate(op: tf.Operation) -> Optional[Gate]:
  """Returns the Gate applied by `op`, or None if `op` is not a gate.

  Args:
    op: a tf.Operation.

  Returns:
    Gate(inputs, mask, log_odds): the gated tensor [..., C], the mask input
    and the log-odds tensor [C]; None when `op` is not a gating multiply.
  """
  if op.type not in GATE_OP_TYPES or len(op.inputs) != 2 or not op.outputs:
    return None
  output = op.outputs[0]
  if output.shape.rank is None or output.shape.rank < 2:
    return None
  channels = graph_util.get_num_channels(output)
  if not channels:
    return None
  for inputs, mask in (op.inputs, reversed(op.inputs)):
    if (inputs.shape.rank != output.shape.rank or
        graph_util.get_num_channels(inputs) != channels or
        not graph_util.is_channel_vector(mask, channels) or
        mask.shape.rank > inputs.shape.rank):
      continue
    log_odds = find_log_odds(mask)
    if log_odds is not None:
      return Gate(inputs, mask, log_odds)
  return None


class LogisticSigmoidSourceOpHandler(grouping_op_handler.GroupingOpHandler):
  """Source handler for logistic-sigmoid gates.

  Registered for `Mul`: a gating multiply's output channels are grouped with
  its gated input and with the mask computation (the [C] ops from the
  log-odds read to the mask, so their cost follows the alive channels), and
  `Mul` ops that are not gates are grouping ops. Also handles the original
  MorphNet's gate op (type 'LogisticSigmoidGating', inputs log-odds, noise
  and temperature, output the mask), which groups like an element-wise op.

  Args:
    regularize_on_mask: regularize the mask (True) or sigmoid(log_odds).
    alive_threshold: alive when the mask (or probability) exceeds it.
    mask_as_alive_vector: threshold the mask (True) or the probability.
  """

  def __init__(self, regularize_on_mask=True, alive_threshold=0.1,
               mask_as_alive_vector=True):
    super().__init__()
    self._regularize_on_mask = regularize_on_mask
    self._alive_threshold = alive_threshold
    self._mask_as_alive_vector = mask_as_alive_vector

  @property
  def is_source_op(self):
    return True

  def is_source(self, op):
    return op.type == ORIGINAL_GATE_OP_TYPE or get_gate(op) is not None

  def assign_grouping(self, op, op_reg_manager):
    """Makes a gate's slices sources, then groups it with its inputs.

    Both inputs of a gating multiply hold the gate's channels: the gated
    tensor [..., C] and the mask [C], whose ops (the log-odds read, sigmoid,
    noise) then follow the alive channels in the cost as in the rebuilt
    gate. The original's gate op groups like an element-wise op.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    gate = None if op.type == ORIGINAL_GATE_OP_TYPE else get_gate(op)
    if gate is None and op.type != ORIGINAL_GATE_OP_TYPE:
      super().assign_grouping(op, op_reg_manager)
      return
    handler_steps.make_sources(op, op_reg_manager)
    indices = None if gate is None else list(range(len(op.inputs)))
    self._group_with_neighbours(op, op_reg_manager, indices)

  def create_regularizer(self, op_slice):
    """Returns a ProbGatingRegularizer of the slice's gates.

    Args:
      op_slice: an OpSlice of a gate.

    Returns:
      A ProbGatingRegularizer over the slice's channels.
    """
    op = op_slice.op
    if op.type == ORIGINAL_GATE_OP_TYPE:
      log_odds, mask = op.inputs[0], op.outputs[0]
    else:
      gate = get_gate(op)
      log_odds, mask = gate.log_odds, gate.mask
    if mask.shape.rank != 1:
      mask = tf.reshape(mask, [-1])
    start, size = op_slice.slice.start_index, op_slice.slice.size
    if start != 0 or size != tf.compat.dimension_value(log_odds.shape[0]):
      log_odds = log_odds[start:start + size]
      mask = mask[start:start + size]
    return prob_gating_regularizer.ProbGatingRegularizer(
        log_odds, mask, regularize_on_mask=self._regularize_on_mask,
        alive_threshold=self._alive_threshold,
        mask_as_alive_vector=self._mask_as_alive_vector)
