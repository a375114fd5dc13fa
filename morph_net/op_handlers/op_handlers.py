"""The op handler registry: op type -> OpHandler, built fresh per use.

`get_gamma_op_handler_dict` and `get_group_lasso_op_handler_dict` return an
`OpHandlerDict`: a dict that answers unknown op types with a grouping handler
and logs a warning once per type, saying how to register a handler. Each call
returns a new dict, so registering a custom handler on one never changes the
others.

The op types of the built-in Keras layers, with their layer rules, cost
forms and latency kinds, are declared in `morph_net.keras.layer_kinds`,
whose test fails when a layer traces to an op type without a handler here.

`custom_handler_scope(handlers)` makes the factories merge `handlers` over
their defaults while it is active (as `keras.utils.custom_object_scope`
does for custom objects): a network regularizer built inside the scope
analyses its graph with them. `keras.ModelRegularizer(...,
op_handler_dict=...)` builds its regularizer in such a scope.
"""

import contextlib
import contextvars
from typing import Mapping

from absl import logging

from morph_net import errors

from morph_net.framework import op_vocabulary

from morph_net.op_handlers import batch_norm_source_op_handler
from morph_net.op_handlers import concat_op_handler
from morph_net.op_handlers import conv2d_transpose_source_op_handler
from morph_net.op_handlers import conv_source_op_handler
from morph_net.op_handlers import depth_to_space_op_handler
from morph_net.op_handlers import depthwise_convolution_op_handler
from morph_net.op_handlers import function_call_op_handler
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import leaf_op_handler
from morph_net.op_handlers import logistic_sigmoid_source_op_handler
from morph_net.op_handlers import matmul_source_op_handler
from morph_net.op_handlers import output_non_passthrough_op_handler
from morph_net.op_handlers import reshape_op_handler
from morph_net.op_handlers import slice_op_handler
from morph_net.op_handlers import split_op_handler

__all__ = [
    'custom_handler_scope', 'ELEMENTWISE_OP_TYPES', 'FIRST_INPUT_OP_TYPES',
    'LEAF_OP_TYPES', 'NON_PASSTHROUGH_OP_TYPES', 'OpHandlerDict',
    'REDUCTION_OP_TYPES', 'RESHAPE_OP_TYPES', 'RESIZE_OP_NAMES',
    'get_gamma_op_handler_dict', 'get_group_lasso_op_handler_dict',
    'get_logistic_sigmoid_op_handler_dict'
]

# Element-wise ops: output channels are every same-width input's channels.
ELEMENTWISE_OP_TYPES = (
    'Abs', 'Add', 'AddN', 'AddV2', 'BiasAdd', 'Cast', 'ClipByValue', 'Div',
    'DivNoNan', 'Elu', 'Enter', 'Erf', 'Exit', 'Exp', 'FakeQuantWithMinMaxVars',
    'Floor', 'Gelu', 'Identity', 'IdentityN', 'LeakyRelu', 'Log', 'Log1p',
    'LogSoftmax', 'Maximum', 'Merge', 'Minimum', 'Mul', 'Neg', 'NextIteration',
    'Pow', 'PreventGradient', 'ReadVariableOp', 'RealDiv', 'Reciprocal', 'Relu',
    'Relu6', 'Round', 'Rsqrt', 'Selu', 'Select', 'SelectV2', 'Sigmoid', 'Sign',
    'Snapshot', 'Softmax', 'Softplus', 'Softsign', 'Sqrt', 'Square',
    'SquaredDifference', 'StopGradient', 'Sub', 'Switch', 'Tanh',
    'FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3', 'Sin', 'Cos',
    # What Keras 3's unary ops and activations lower to besides the above
    # (`gelu` with approximate=False is Erfc, `celu` Expm1, `nan_to_num`
    # IsNan/IsInf). Atan (`ops.arctan`) stays unregistered: the tests use it
    # as the example of an op type without a handler.
    'Ceil', 'Cosh', 'Erfc', 'Expm1', 'IsInf', 'IsNan', 'Sinh', 'Tan')
# Ops that group only their first input (the others are sizes or paddings).
FIRST_INPUT_OP_TYPES = (
    'AvgPool', 'AvgPool3D', 'BatchToSpaceND', 'MaxPool', 'MaxPool3D',
    'MaxPoolV2', 'MirrorPad', 'Pad', 'PadV2', 'ResizeArea', 'ResizeBicubic',
    'ResizeBilinear', 'ResizeNearestNeighbor', 'SpaceToBatchND', 'Tile',
    'BroadcastTo', 'ScaleAndTranslate', 'ImageProjectiveTransformV3')
# The original's name for the resize ops (grouped with their first input).
RESIZE_OP_NAMES = ['ResizeArea', 'ResizeBicubic', 'ResizeBilinear',
                   'ResizeNearestNeighbor']
REDUCTION_OP_TYPES = tuple(sorted(op_vocabulary.REDUCTION_OP_TYPES))
# Ops whose output is a new channel space unrelated to the inputs.
LEAF_OP_TYPES = (
    'ArgMax', 'ArgMin', 'Const', 'Fill', 'Gather', 'GatherV2', 'OneHot',
    'Pack', 'Placeholder', 'PlaceholderWithDefault', 'RandomStandardNormal',
    'RandomUniform', 'RandomUniformInt', 'Range', 'Rank', 'Shape',
    'ShapeN', 'Size', 'SpaceToDepth', 'StatelessRandomUniformV2',
    'StatelessRandomNormalV2', 'TruncatedNormal', 'Unpack', 'VarHandleOp',
    'VariableV2', 'ZerosLike', 'OnesLike', 'NoOp', '_Arg', 'Equal', 'Greater',
    'GreaterEqual', 'Less', 'LessEqual', 'NotEqual', 'LogicalAnd', 'LogicalOr',
    'LogicalNot', 'TopKV2', 'Where', 'BroadcastArgs', 'Einsum',
    'TensorArrayGatherV3', 'TensorListFromTensor', 'TensorListReserve',
    'TensorListStack', 'TensorListGetItem', 'TensorListSetItem',
    'TensorListLength', 'TensorListElementShape') + tuple(
        # Functional loops (Keras 3 recurrent layers): the channels entering
        # a loop are consumed whole; the cost calculator reports its
        # arithmetic.
        sorted(op_vocabulary.LOOP_OP_TYPES))
NON_PASSTHROUGH_OP_TYPES = tuple(sorted(
    op_vocabulary.CONV_OP_TYPES | op_vocabulary.CONV_TRANSPOSE_OP_TYPES |
    op_vocabulary.MATMUL_OP_TYPES))
# Reshapes (see reshape_op_handler): op type -> handler kind for reshapes
# that start a new channel space (the reshape-like ops of `op_vocabulary`,
# Transpose and ReverseV2).
RESHAPE_OP_TYPES = {'Reshape': 'leaf', 'ExpandDims': 'non_passthrough',
                    'Squeeze': 'grouping', 'Transpose': 'non_passthrough',
                    'ReverseV2': 'leaf'}


class OpHandlerDict(dict):
  """Dict of op handlers that answers unknown op types with a default.

  Args:
    handlers: initial mapping from op type to OpHandler.
    default_handler: the handler for unregistered op types (grouping).
  """

  def __init__(self, handlers=None, default_handler=None):
    super().__init__(handlers or {})
    self._default_handler = (default_handler or
                             grouping_op_handler.GroupingOpHandler())
    self._warned_types = set()

  def __missing__(self, op_type):
    if op_type not in self._warned_types:
      self._warned_types.add(op_type)
      logging.warning(
          'MorphNet has no op handler for op type %s; treating it as a '
          'grouping op (output channels = input channels of the same width). '
          'If that is wrong, register a handler: op_handler_dict[%r] = '
          'leaf_op_handler.LeafOpHandler() (or another OpHandler); for a '
          'Keras model pass it as ModelRegularizer(..., op_handler_dict={%r: '
          '...}), for a network regularizer build it inside '
          'op_handlers.custom_handler_scope({%r: ...}).', op_type, op_type,
          op_type, op_type)
    return self._default_handler


# The handlers `custom_handler_scope` merges over the factories' defaults.
_CUSTOM_HANDLERS = contextvars.ContextVar('morph_net_custom_op_handlers',
                                          default=None)


def _check_custom_handlers(handlers) -> dict:
  """`handlers` as a dict of op type -> handler; raises if malformed."""
  if not isinstance(handlers, Mapping):
    raise errors.InvalidArgumentTypeError(
        'Invalid value for argument `op_handler_dict`. Expected a dict of op '
        'type -> OpHandler, such as {"Atan": '
        'leaf_op_handler.LeafOpHandler()}. Received: op_handler_dict=%r (%s)'
        % (handlers, type(handlers).__name__))
  for op_type, handler in handlers.items():
    if not isinstance(op_type, str):
      raise errors.InvalidArgumentError(
          'Invalid key of argument `op_handler_dict`. Expected an op type '
          'name (a str such as "Atan"). Received: %r (%s)' %
          (op_type, type(op_type).__name__))
    if not callable(getattr(handler, 'assign_grouping', None)):
      raise errors.InvalidArgumentError(
          'Invalid handler for op type %r in argument `op_handler_dict`. '
          'Expected an OpHandler (morph_net.framework.op_handler.OpHandler, '
          'for example leaf_op_handler.LeafOpHandler()). Received: %r (%s)' %
          (op_type, handler, type(handler).__name__))
  return dict(handlers)


@contextlib.contextmanager
def custom_handler_scope(handlers: Mapping[str, object]):
  """Within the scope, the registry factories add `handlers` to theirs.

  Every `get_*_op_handler_dict` called inside (for example by a network
  regularizer's constructor) registers `handlers` over its defaults. Scopes
  nest (the inner one's handlers win) and are local to the thread or task.

      with op_handlers.custom_handler_scope(
          {'Atan': leaf_op_handler.LeafOpHandler()}):
        regularizer = flop_regularizer.GammaFlopsRegularizer(...)

  Args:
    handlers: {op type: OpHandler}.

  Yields:
    None.

  Raises:
    InvalidArgumentTypeError: if `handlers` is not a mapping.
    InvalidArgumentError: for a key that is not a str or a value that is not
      an op handler (has no `assign_grouping`).
  """
  merged = dict(_CUSTOM_HANDLERS.get() or {})
  merged.update(_check_custom_handlers(handlers))
  token = _CUSTOM_HANDLERS.set(merged)
  try:
    yield
  finally:
    _CUSTOM_HANDLERS.reset(token)


def _with_custom_handlers(handlers: 'OpHandlerDict') -> 'OpHandlerDict':
  """`handlers` with those of the active `custom_handler_scope` merged."""
  custom = _CUSTOM_HANDLERS.get()
  if custom:
    handlers.update(custom)
  return handlers


def _get_base_op_handler_dict():
  """Handlers shared by every regularizer family."""
  grouping = grouping_op_handler.GroupingOpHandler()
  first_input = grouping_op_handler.GroupingOpHandler(grouping_indices=[0])
  reduction = grouping_op_handler.ReductionOpHandler()
  leaf = leaf_op_handler.LeafOpHandler()
  non_passthrough = (
      output_non_passthrough_op_handler.OutputNonPassthroughOpHandler())
  handlers = {}
  handlers.update((t, grouping) for t in ELEMENTWISE_OP_TYPES)
  handlers.update((t, first_input) for t in FIRST_INPUT_OP_TYPES)
  handlers.update((t, reduction) for t in REDUCTION_OP_TYPES)
  handlers.update((t, leaf) for t in LEAF_OP_TYPES)
  handlers.update((t, non_passthrough) for t in NON_PASSTHROUGH_OP_TYPES)
  fallbacks = {'leaf': leaf, 'non_passthrough': non_passthrough,
               'grouping': grouping}
  handlers.update(
      (t, reshape_op_handler.ReshapeOpHandler(fallbacks[kind]))
      for t, kind in RESHAPE_OP_TYPES.items())
  concat = concat_op_handler.ConcatOpHandler()
  split = split_op_handler.SplitOpHandler()
  slicing = slice_op_handler.SliceOpHandler()
  handlers.update({
      'ConcatV2': concat, 'Concat': concat, 'Split': split, 'SplitV': split,
      'Slice': slicing, 'StridedSlice': slicing,
      'DepthwiseConv2dNative':
          depthwise_convolution_op_handler.DepthwiseConvolutionOpHandler(),
      'DepthToSpace': depth_to_space_op_handler.DepthToSpaceOpHandler(),
  })
  call = function_call_op_handler.FunctionCallOpHandler()
  handlers.update((t, call) for t in op_vocabulary.CALL_OP_TYPES)
  return OpHandlerDict(handlers)


def get_gamma_op_handler_dict(gamma_threshold: float = 1e-3) -> OpHandlerDict:
  """Returns a new registry whose sources are batch norms with a scale.

  Args:
    gamma_threshold: alive threshold on |gamma|.

  Returns:
    An OpHandlerDict.
  """
  handlers = _get_base_op_handler_dict()
  source = batch_norm_source_op_handler.BatchNormSourceOpHandler(
      gamma_threshold)
  for op_type in batch_norm_source_op_handler.FUSED_BATCH_NORM_TYPES:
    handlers[op_type] = source
  handlers['Mul'] = source  # Decomposed (Keras 3) batch norm; else grouping.
  return _with_custom_handlers(handlers)


def get_group_lasso_op_handler_dict(threshold: float = 1e-3,
                                    l1_fraction: float = 0.0) -> OpHandlerDict:
  """Returns a new registry whose sources are conv and matmul weights.

  Args:
    threshold: alive threshold on the group lasso norm.
    l1_fraction: weight of the L1 part, in [0, 1].

  Returns:
    An OpHandlerDict.
  """
  handlers = _get_base_op_handler_dict()
  conv = conv_source_op_handler.ConvSourceOpHandler(threshold, l1_fraction)
  transpose = conv2d_transpose_source_op_handler.Conv2DTransposeSourceOpHandler(
      threshold, l1_fraction)
  matmul = matmul_source_op_handler.MatMulSourceOpHandler(threshold,
                                                          l1_fraction)
  handlers.update({'Conv2D': conv, 'Conv3D': conv,
                   'Conv2DBackpropInput': transpose,
                   'Conv3DBackpropInputV2': transpose, 'MatMul': matmul})
  # EinsumDense ('abc,cd->abd') runs a batch matmul by its 2-D kernel.
  batch_matmul = matmul_source_op_handler.BatchMatMulSourceOpHandler(
      threshold, l1_fraction)
  handlers.update((t, batch_matmul) for t in sorted(
      op_vocabulary.MATMUL_OP_TYPES - {'MatMul'}))
  call = function_call_op_handler.FunctionCallOpHandler(threshold,
                                                        l1_fraction)
  handlers.update((t, call) for t in op_vocabulary.CALL_OP_TYPES)
  return _with_custom_handlers(handlers)


def get_logistic_sigmoid_op_handler_dict(
    regularize_on_mask: bool = True, alive_threshold: float = 0.1,
    mask_as_alive_vector: bool = True) -> OpHandlerDict:
  """Returns a new registry whose sources are logistic-sigmoid channel gates.

  Args:
    regularize_on_mask: regularize the gate mask (True) or sigmoid(log_odds).
    alive_threshold: a channel is alive when its mask (or probability)
      exceeds it.
    mask_as_alive_vector: threshold the mask (True) or the probability.

  Returns:
    An OpHandlerDict.
  """
  handlers = _get_base_op_handler_dict()
  source = logistic_sigmoid_source_op_handler.LogisticSigmoidSourceOpHandler(
      regularize_on_mask, alive_threshold, mask_as_alive_vector)
  for op_type in logistic_sigmoid_source_op_handler.GATE_OP_TYPES:
    handlers[op_type] = source  # Gating multiplies; other Mul ops group.
  handlers[logistic_sigmoid_source_op_handler.ORIGINAL_GATE_OP_TYPE] = source
  return _with_custom_handlers(handlers)
