"""BatchNormSourceOpHandler: batch norm scale (gamma) as regularization source.

Two graph forms are recognised:

* FusedBatchNorm / V2 / V3 (TF1 layers, tf_keras): gamma is input 1.
* The decomposed form of Keras 3 (and of non-fused TF1 batch norm):
  `Mul(x, Mul(Rsqrt(variance + eps), gamma))`. The outer Mul is the source.

Batch norm without a learned scale (scale=False) is not a source.
"""

from typing import Optional

import tensorflow as tf

from morph_net.framework import op_handler_util
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_regularizers import gamma_l1_regularizer

FUSED_BATCH_NORM_TYPES = frozenset(
    ['FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3'])


def _is_rsqrt(tensor: tf.Tensor) -> bool:
  return op_handler_util.skip_forwarding_ops(tensor).op.type == 'Rsqrt'


def get_gamma(op: tf.Operation) -> Optional[tf.Tensor]:
  """Returns the learned batch norm scale applied by `op`, or None.

  Args:
    op: a tf.Operation.

  Returns:
    The gamma tensor (read of the scale variable) when `op` is a fused batch
    norm with a variable scale, or the per-channel multiply of a decomposed
    batch norm whose scale is Rsqrt(...) * gamma; None otherwise.
  """
  if op.type in FUSED_BATCH_NORM_TYPES:
    gamma = op.inputs[1]
    return gamma if op_handler_util.reads_variable(gamma) else None
  if op.type != 'Mul' or len(op.inputs) != 2:
    return None
  for x, scale in (op.inputs, reversed(op.inputs)):
    if x.shape.rank is None or x.shape.rank < 2 or scale.shape.rank != 1:
      continue
    scale_op = op_handler_util.skip_forwarding_ops(scale).op
    if scale_op.type != 'Mul' or len(scale_op.inputs) != 2:
      continue
    a, b = scale_op.inputs
    for rsqrt, gamma in ((a, b), (b, a)):
      if _is_rsqrt(rsqrt) and op_handler_util.reads_variable(gamma):
        return gamma
  return None


class BatchNormSourceOpHandler(grouping_op_handler.GroupingOpHandler):
  """Source handler for batch norm with a learned scale.

  Ops registered here that are not batch norm sources (a plain `Mul`, or a
  batch norm with scale=False) behave as grouping ops.

  Args:
    gamma_threshold: channels with |gamma| at or below it are dead.
  """

  def __init__(self, gamma_threshold: float):
    super().__init__()
    self._gamma_threshold = gamma_threshold

  @property
  def is_source_op(self):
    return True

  def is_source(self, op):
    return get_gamma(op) is not None

  def create_regularizer(self, op_slice):
    gamma = get_gamma(op_slice.op)
    start, size = op_slice.slice.start_index, op_slice.slice.size
    if start != 0 or size != gamma.shape[0]:
      gamma = gamma[start:start + size]
    return gamma_l1_regularizer.GammaL1Regularizer(gamma,
                                                   self._gamma_threshold)
