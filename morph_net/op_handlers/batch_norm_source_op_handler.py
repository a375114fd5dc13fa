"""BatchNormSourceOpHandler: batch norm scale (gamma) as regularization source.

Two graph forms are recognised:

* FusedBatchNorm / V2 / V3 (TF1 layers, tf_keras): gamma is input 1.
* The decomposed form of Keras 3 (and of non-fused TF1 batch norm):
  `Mul(x, Mul(Rsqrt(variance + eps), gamma))`. The outer Mul is the source.

Batch norm without a learned scale (scale=False) is not a source.
"""

from typing import Optional
import weakref

import tensorflow as tf

from morph_net.framework import graph_util
from morph_net.framework import op_vocabulary
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import handler_steps
from morph_net.op_regularizers import gamma_l1_regularizer

__all__ = ['BatchNormSourceOpHandler', 'FUSED_BATCH_NORM_TYPES', 'get_gamma']

FUSED_BATCH_NORM_TYPES = op_vocabulary.FUSED_BATCH_NORM_OP_TYPES


def _is_vector_reshape(tensor: tf.Tensor) -> bool:
  """Whether a reshape-like op's output and input are both [C] or
  [1, .., 1, C]."""
  return (graph_util.is_channel_vector(tensor.op.inputs[0]) and
          graph_util.is_channel_vector(tensor))


def _skip_vector_reshapes(tensor: tf.Tensor) -> tf.Tensor:
  """Follows forwarding ops and [C] <-> [1, .., 1, C] reshapes upwards.

  Batch norm with an explicit axis (keras.applications) reshapes its
  parameters to the broadcast shape before using them.
  """
  return op_vocabulary.walk_back(tensor, through_reshapes=True,
                                 reshape_filter=_is_vector_reshape)


def _is_rsqrt(tensor: tf.Tensor) -> bool:
  return _skip_vector_reshapes(tensor).op.type == 'Rsqrt'


def get_gamma(op: tf.Operation) -> Optional[tf.Tensor]:
  """Returns the learned batch norm scale applied by `op`, or None.

  Args:
    op: a tf.Operation.

  Returns:
    The gamma tensor (read of the scale variable) when `op` is a fused batch
    norm with a variable scale, or the per-channel multiply of a decomposed
    batch norm whose scale is Rsqrt(...) * gamma; None otherwise. The other
    multiply by that scale, of the moving mean (reshaped to [1, 1, 1, C] by
    batch norms with an explicit axis), is not a source.
  """
  if op.type in FUSED_BATCH_NORM_TYPES:
    gamma = op.inputs[1]
    return gamma if graph_util.reads_variable(gamma) else None
  if op.type != 'Mul' or len(op.inputs) != 2:
    return None
  for x, scale in (op.inputs, reversed(op.inputs)):
    if (x.shape.rank is None or x.shape.rank < 2 or
        not graph_util.is_channel_vector(scale) or
        scale.shape.rank > x.shape.rank):
      continue
    if graph_util.reads_variable(_skip_vector_reshapes(x)):
      continue  # moving_mean * scale (a batch norm's shift), not the data.
    scale_op = _skip_vector_reshapes(scale).op
    if scale_op.type != 'Mul' or len(scale_op.inputs) != 2:
      continue
    a, b = scale_op.inputs
    for rsqrt, gamma in ((a, b), (b, a)):
      gamma = _skip_vector_reshapes(gamma)
      if (_is_rsqrt(rsqrt) and gamma.shape.rank == 1 and
          graph_util.reads_variable(gamma)):
        return gamma
  return None


class BatchNormSourceOpHandler(grouping_op_handler.GroupingOpHandler):
  """Source handler for batch norm with a learned scale.

  A source op's slices get groups of their own, then the op groups like an
  element-wise op. Ops registered here that are not batch norm sources (a
  plain `Mul`, or a batch norm with scale=False, whose |gamma| would be a
  constant) are just grouping ops. A subclass that overrides
  `create_regularizer` builds its own regularizers, so for it every fused
  batch norm is a source, as in the original.

  Args:
    gamma_threshold: channels with |gamma| at or below it are dead.
  """

  def __init__(self, gamma_threshold):
    super().__init__()
    self._gamma_threshold = gamma_threshold
    self._is_source_memo = weakref.WeakKeyDictionary()  # op -> bool.

  @property
  def is_source_op(self):
    return True

  def is_source(self, op):
    if (op.type in FUSED_BATCH_NORM_TYPES and type(self).create_regularizer
        is not BatchNormSourceOpHandler.create_regularizer):
      return True
    memo = getattr(self, '_is_source_memo', None)  # Subclasses may not init.
    if memo is None:
      return get_gamma(op) is not None
    answer = memo.get(op)
    if answer is None:
      answer = memo[op] = get_gamma(op) is not None
    return answer

  def assign_grouping(self, op, op_reg_manager):
    """Makes a source op's slices sources, then groups it.

    Args:
      op: tf.Operation to group.
      op_reg_manager: OpRegularizerManager tracking slices and groups.
    """
    if self.is_source(op):
      handler_steps.make_sources(op, op_reg_manager)
    super().assign_grouping(op, op_reg_manager)

  def create_regularizer(self, op_slice):
    """Returns a GammaL1Regularizer of the slice's part of gamma.

    Args:
      op_slice: an OpSlice of a batch norm source.

    Returns:
      A GammaL1Regularizer over |gamma[start:start + size]|.
    """
    gamma = get_gamma(op_slice.op)
    start, size = op_slice.slice.start_index, op_slice.slice.size
    if start != 0 or size != tf.compat.dimension_value(gamma.shape[0]):
      gamma = gamma[start:start + size]
    return gamma_l1_regularizer.GammaL1Regularizer(gamma,
                                                   self._gamma_threshold)
