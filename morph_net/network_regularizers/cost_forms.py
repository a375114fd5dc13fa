"""The costs of one op as multilinear forms in its alive channel counts.

Every built-in resource is, per op, a form in the alive input and output
channel counts IN and OUT,

  cost = bilinear x IN x OUT + inputs x IN + outputs x OUT,

whose regularization term replaces each alive count by the regularization
sum of those channels (RIN, ROUT) in turn:

  term = bilinear x (IN x ROUT + OUT x RIN) + inputs x RIN + outputs x ROUT.

A depthwise convolution's bilinear part is linear: bilinear x OUT and
bilinear x (RIN + ROUT) (MorphNet paper, Gordon et al. 2018, section 3; the
original's resource_function.py). FLOPs and model size have a bilinear part
only; memory has all three; activation counts an output part. Latency is the
larger of two forms (compute time, memory time) and its term is the term of
the larger one.

A form whose `overhead` is a number (not None) is the cost of a launched
kernel, as a measured latency profile describes it (see `latency_profile`):
the op runs only if it has an alive output channel, and then costs its
rate parts plus the fixed overhead,

  cost = [OUT > 0] x (multilinear parts + overhead),

so an op whose channels all died costs nothing, as in the network rebuilt
without it. A form whose `multiple` is above 1 is a kernel that runs
channels in blocks of that many (vector width, register blocking): its
cost is taken at the alive counts rounded up to the multiple,
ceil(IN / m) x m and ceil(OUT / m) x m, while its term keeps the counts
as they are (the rounding is a step, with no gradient). Its
`misalignment` p (with a multiple) is the extra cost of a count that is
not a multiple: when IN or OUT is not one, the multilinear parts cost
1 + p times as much (the overhead does not change; the term ignores the
step too). The term keeps the multilinear parts only: the indicator and
the overhead are constant wherever the term has a gradient (every alive
count above zero), the overhead is saved only when the last channel dies,
and the rate parts already drive the channels there. The forms of one op
carry the same overhead, so their max is the max of the rate parts plus it.

Writing the resources this way lets `resource_function` evaluate them per op
and lets the cost calculator evaluate all ops of a network at once from the
same coefficients. Coefficients are Python floats when the shapes are static,
float32 tensors when a spatial size is only known at run time.
"""

import math

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.framework import function_calls
from morph_net.framework import graph_util
from morph_net.framework import op_vocabulary
from morph_net.network_regularizers import einsum_cost
from morph_net.network_regularizers import form_algebra
from morph_net.network_regularizers import op_types

__all__ = [
    'Form', 'scale', 'aligned', 'evaluate', 'evaluate_rows', 'is_flop_op',
    'matmul_rows_per_example', 'spatial_size', 'flop_coeff',
    'num_weights_coeff', 'flop_forms', 'model_size_forms',
    'activation_count_forms', 'activation_size_forms', 'memory_forms',
    'latency_forms',
]

# The forms and their evaluation are shared with the layer-level engine
# (`form_algebra`, which needs no TensorFlow); here they run on tf.Tensors.
Form = form_algebra.Form
scale = form_algebra.scale

# Inputs that hold no activations: a transposed conv's output shape, batch
# norm parameters, reduction indices.
_SHAPE_INPUT = {'Conv2DBackpropInput': 0, 'Conv3DBackpropInputV2': 0,
                'Pad': 1, 'PadV2': 1, 'MirrorPad': 1}


def aligned(count, multiple):
  """`count` rounded up to a multiple of `multiple` (None or 1: as is).

  Args:
    count: a channel count: a number, or a tensor (float).
    multiple: an integer >= 1, or None.

  Returns:
    ceil(count / multiple) x multiple, of the count's type.
  """
  return form_algebra.aligned(count, multiple, TF_MATH)


def _is_number(value):
  return isinstance(value, (int, float))


def _any_alive(num_alive):
  """1 if `num_alive` > 0 else 0: a number, or a tensor of its dtype."""
  if _is_number(num_alive):
    return 1.0 if num_alive > 0 else 0.0
  return tf.cast(num_alive > 0, num_alive.dtype)


def _float32(value):
  return tf.cast(tf.convert_to_tensor(value), tf.float32)


# The tensor operations of the shared algebra, on tf.Tensors.
TF_MATH = form_algebra.Math(ceil=tf.math.ceil, to_float32=_float32,
                            where=tf.where, maximum=tf.maximum,
                            any_alive=_any_alive)


def evaluate(forms, is_regularization, num_alive_inputs, num_alive_outputs,
             reg_inputs, reg_outputs):
  """The cost (or term) of an op whose resource is the max of `forms`.

  Args:
    forms: a sequence of Form; empty for an op without this resource.
    is_regularization: return the term of the largest form, not its cost.
    num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs: numbers or
      scalar tensors.

  Returns:
    0.0 for no forms; a Python number when everything is a number; else a
    float32 scalar tensor.
  """
  return form_algebra.evaluate(forms, is_regularization, num_alive_inputs,
                               num_alive_outputs, reg_inputs, reg_outputs,
                               TF_MATH)


def _accumulate(total, value):
  return value if total is None else total + value


def _vector_cost_and_term(forms, need_term, alive_in, alive_out, reg_in,
                          reg_out):
  """Per-row (cost, term) vectors of one form per row.

  Args:
    forms: list of Form with number coefficients, one per row.
    need_term: whether to build the term vector.
    alive_in, alive_out, reg_in, reg_out: float64 tensors [rows].

  Returns:
    (cost, term) float64 tensors [rows] (term None if not needed); a part
    whose coefficients are all 0 adds no op.
  """
  bilinear = np.array([f.bilinear for f in forms], np.float64)
  inputs = np.array([f.inputs for f in forms], np.float64)
  outputs = np.array([f.outputs for f in forms], np.float64)
  depthwise = np.array([bool(f.depthwise) for f in forms])
  launched = np.array([f.overhead is not None for f in forms])
  overhead = np.array([f.overhead or 0.0 for f in forms], np.float64)
  multiples = np.array([f.multiple or 1 for f in forms], np.float64)
  misalignment = np.array([(f.misalignment or 0.0) if (f.multiple or 1) > 1
                           else 0.0 for f in forms], np.float64)
  cost_in, cost_out = alive_in, alive_out
  if (multiples > 1).any():  # The cost at counts rounded up (docstring).
    cost_in = tf.math.ceil(alive_in / multiples) * multiples
    cost_out = tf.math.ceil(alive_out / multiples) * multiples
  cost, term = None, None
  if bilinear.any():
    if not depthwise.any():
      cost = bilinear * (cost_in * cost_out)
      if need_term:
        term = bilinear * (alive_in * reg_out + alive_out * reg_in)
    else:
      dense = (~depthwise).astype(np.float64)
      linear = depthwise.astype(np.float64)
      cost = bilinear * cost_out * (cost_in * dense + linear)
      if need_term:
        term = bilinear * (dense * (alive_in * reg_out + alive_out * reg_in) +
                           linear * (reg_in + reg_out))
  if inputs.any():
    cost = _accumulate(cost, inputs * cost_in)
    if need_term:
      term = _accumulate(term, inputs * reg_in)
  if outputs.any():
    cost = _accumulate(cost, outputs * cost_out)
    if need_term:
      term = _accumulate(term, outputs * reg_out)
  if cost is not None and misalignment.any():  # 1 + p off the multiples.
    misaligned = tf.cast(tf.logical_or(tf.not_equal(cost_in, alive_in),
                                       tf.not_equal(cost_out, alive_out)),
                         cost.dtype)
    cost = cost * (1.0 + misalignment * misaligned)
  if launched.any():  # Cost only; see the module docstring.
    launched = launched.astype(np.float64)
    runs = launched * _any_alive(alive_out) + (1.0 - launched)
    cost = (overhead if cost is None else cost + overhead) * runs
  zeros = tf.zeros_like(alive_out)
  return (zeros if cost is None else cost,
          (zeros if term is None else term) if need_term else None)


def evaluate_rows(forms_per_row, is_regularization, alive_in, alive_out,
                  reg_in, reg_out):
  """The sum over rows of `evaluate`, computed with a few vector ops.

  Args:
    forms_per_row: for each row (op), its list of Form with number
      coefficients; every row has the same number of forms.
    is_regularization: sum the terms instead of the costs.
    alive_in, alive_out, reg_in, reg_out: float64 tensors [rows], the
      arguments of each row.

  Returns:
    A float64 scalar tensor.
  """
  best_cost, best_term = None, None
  for index in range(len(forms_per_row[0])):
    forms = [row[index] for row in forms_per_row]
    need_term = is_regularization
    cost, term = _vector_cost_and_term(forms, need_term, alive_in, alive_out,
                                       reg_in, reg_out)
    if best_cost is None:
      best_cost, best_term = cost, term
    else:
      if is_regularization:
        best_term = tf.where(cost > best_cost, term, best_term)
      best_cost = tf.maximum(cost, best_cost)
  return tf.reduce_sum(best_term if is_regularization else best_cost)


def is_flop_op(op: tf.Operation) -> bool:
  """Whether `op` does multiply-adds over channels (convs and matmuls).

  A call op does when its body is one conv or matmul (`op_types.costed_op`).

  Raises:
    InvalidArgumentError: if `op` is not a tf.Operation.
  """
  if not isinstance(op, tf.Operation):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `op`. Expected a tf.Operation. Received: '
        '%r (%s)' % (op, type(op).__name__))
  if op.type in op_types.CALL_OP_TYPES:
    return op_types.costed_op(op) is not op
  if op.type in op_types.EINSUM_OP_TYPES:
    return einsum_cost.read_einsum(op) is not None
  return op.type in op_types.WEIGHTED_OP_TYPES


def _is_depthwise(op):
  if op.type in op_types.EINSUM_OP_TYPES:
    return einsum_cost.read_einsum(op).depthwise
  inner = op_types.costed_op(op)
  return (inner.type in op_types.DEPTHWISE_OP_TYPES or
          graph_util.is_channelwise_conv(inner))


def _einsum_coeff(op, total):
  """`total` per (IN, OUT) pair of an Einsum (per OUT if depthwise)."""
  einsum = einsum_cost.read_einsum(op)
  pairs = einsum.out_channels * (1 if einsum.depthwise else
                                 einsum.in_channels)
  return float(total) / pairs


def _weights_tensor(tensor):
  """A matmul's weights, through the Reshape of an EinsumDense kernel."""
  if tensor.op.type == 'Reshape':
    return tensor.op.inputs[0]
  return tensor


def _kernel_size(op):
  """Product of the kernel's spatial dimensions (all but the last two)."""
  dims = op.inputs[1].shape.as_list()
  if dims is None or any(d is None for d in dims[:-2]):
    raise errors.UnsupportedGraphError(
        "Op '%s' (%s) has a kernel of unknown size (shape %s), so its cost "
        'cannot be computed. Give the kernel a static shape.' % (
            op.name, op.type, op.inputs[1].shape))
  return math.prod(dims[:-2])


def spatial_size(tensor: tf.Tensor):
  """Product of dims [1:-1]: an int, or a float32 tensor if not static."""
  shape = tensor.shape
  if shape.rank is not None:
    dims = shape.as_list()[1:-1]
    if all(d is not None for d in dims):
      return math.prod(dims)
  return tf.cast(tf.reduce_prod(tf.shape(tensor)[1:-1]), tf.float32)


def _group_count(op):
  """Channel groups of a grouped convolution whose cost is IN x OUT / groups
  (1 for other ops, and for channelwise convs, whose cost is per OUT)."""
  if (op.type not in op_types.CONV_OP_TYPES or not op.inputs[0].shape.rank or
      graph_util.is_channelwise_conv(op)):
    return 1
  channels = tf.compat.dimension_value(op.inputs[0].shape[-1])
  kernel_in = tf.compat.dimension_value(op.inputs[1].shape[-2])
  if not channels or not kernel_in:
    return 1
  return max(1, channels // kernel_in)


def matmul_rows_per_example(op: tf.Operation) -> int:
  """Rows a MatMul multiplies per example.

  A Dense layer on a rank >= 3 input (Keras' Tensordot) reshapes
  [batch, d1, ..., dk, C] to [batch x d1 x ... x dk, C] before its MatMul,
  so each example contributes d1 x ... x dk rows; other MatMuls take one row
  per example.

  Args:
    op: a MatMul tf.Operation.

  Returns:
    The product of the leading non-batch dimensions merged into the rows, or
    1.

  Raises:
    UnsupportedGraphError: if those dimensions are not static.
  """
  rows = graph_util.skip_forwarding_ops(op.inputs[0])
  if rows.op.type != 'Reshape' or rows.shape.rank != 2:
    return 1
  value = rows.op.inputs[0]
  if (value.shape.rank is None or value.shape.rank < 3 or
      graph_util.get_num_channels(value) is None or
      graph_util.get_num_channels(value) !=
      graph_util.get_num_channels(rows)):
    return 1
  dims = value.shape.as_list()[1:-1]
  if None in dims:
    raise errors.UnsupportedGraphError(
        'Op %s multiplies rows reshaped from %s (shape %s), whose positions '
        'per example are not static, so its cost cannot be computed. Build '
        'the model with a fixed input size.' % (
            graph_util.describe_op(op), value.name, value.shape))
  return math.prod(dims)


def flop_coeff(op: tf.Operation):
  """FLOPs per (input channel, output channel) pair, for one example.

  Args:
    op: a tf.Operation.

  Returns:
    2 x output spatial size x kernel size for Conv2D / Conv3D (divided by the
    groups of a grouped conv; the size of the layer's output for convs run
    on space-to-batch blocks, see `_dilated_output`); 2 x input spatial size x kernel size for
    transposed convs (their input is the small side); 2 x output spatial size
    x kernel size per output channel for depthwise convs; 2 x rows per
    example for matmuls (`matmul_rows_per_example`; for batched matmuls the
    output's positions); an Einsum's FLOPs per example over IN x OUT
    (`einsum_cost`); the called op's for a call op (`op_types.costed_op`);
    0 for other ops. A float, or a float32 tensor when a spatial size is
    only known at run time.
  """
  if not is_flop_op(op):
    return 0.0
  if op.type in op_types.EINSUM_OP_TYPES:
    return _einsum_coeff(op, einsum_cost.read_einsum(op).flops)
  inner = op_types.costed_op(op)  # The op itself, or the op a call runs.
  output = op.outputs[0] if inner is op else _call_output(op)
  if inner.type == 'MatMul':
    return 2.0 * matmul_rows_per_example(inner)
  if inner.type in op_types.MATMUL_OP_TYPES:
    return 2.0 * spatial_size(output)
  if inner.type in op_types.CONV_TRANSPOSE_OP_TYPES:
    spatial = spatial_size(op_types.get_input_activation(op))
  else:
    spatial = spatial_size(_dilated_output(output))
  return 2.0 * spatial * _kernel_size(inner) / _group_count(inner)


def _dilated_output(tensor: tf.Tensor) -> tf.Tensor:
  """The result of a dilated conv that TF runs on space-to-batch blocks.

  `tf.nn.depthwise_conv2d` with a rate (DepthwiseConv and SeparableConv
  layers with a dilation rate) and `tf.nn.convolution` with a dilation on
  a 1-D input (Conv1D layers) run the conv on SpaceToBatchND blocks of the
  input, each with a fraction of the positions in the batch axis, and put
  them back with BatchToSpaceND: the layer's output positions are those of
  the BatchToSpaceND's output. A 1-D conv runs as a 2-D one between
  ExpandDims and Squeeze, so the Squeeze comes between the conv and the
  BatchToSpaceND.

  Args:
    tensor: a conv's output.

  Returns:
    The BatchToSpaceND output it alone feeds (directly or through one
    Squeeze), else `tensor`.
  """
  consumers = tensor.consumers()
  if len(consumers) == 1 and consumers[0].type == 'Squeeze':
    consumers = consumers[0].outputs[0].consumers()
  if len(consumers) == 1 and consumers[0].type == 'BatchToSpaceND':
    return consumers[0].outputs[0]
  return tensor


def _call_output(op):
  """The output of a call op that is its body op's result."""
  return function_calls.called_op(op).output


def num_weights_coeff(op: tf.Operation) -> float:
  """Weights per (input, output) channel pair (per output channel, depthwise).

  Args:
    op: a tf.Operation.

  Returns:
    The kernel size for convs (divided by the groups of a grouped conv), 1
    for matmuls with weights (a variable or a constant), 0 for matmuls of two
    activations and for other ops.
  """
  if not is_flop_op(op):
    return 0.0
  if op.type in op_types.EINSUM_OP_TYPES:
    return _einsum_coeff(op, einsum_cost.read_einsum(op).weights)
  op = op_types.costed_op(op)
  if op.type in op_types.MATMUL_OP_TYPES:
    weights = _weights_tensor(op.inputs[1])
    return 1.0 if graph_util.holds_weights(weights) else 0.0
  return float(_kernel_size(op)) / _group_count(op)


def flop_forms(op, batch_size=1):
  """FLOPs: batch_size x flop_coeff x IN x OUT (depthwise: x OUT)."""
  if not is_flop_op(op):
    return []
  return [Form(batch_size * flop_coeff(op), 0.0, 0.0,
               _is_depthwise(op))]


def model_size_forms(op, batch_size=1):
  """Weights: num_weights_coeff x IN x OUT (depthwise: x OUT); no biases."""
  del batch_size  # Weights do not depend on the batch.
  if not is_flop_op(op):
    return []
  return [Form(num_weights_coeff(op), 0.0, 0.0,
               _is_depthwise(op))]


def activation_count_forms(op, batch_size=1):
  """The original's activation count: OUT, for conv and matmul ops."""
  del batch_size
  return [Form(0.0, 0.0, 1.0, False)] if is_flop_op(op) else []


def activation_size_forms(op, batch_size=1):
  """Output activations: batch x output spatial size x OUT."""
  if not is_flop_op(op):
    return []
  return [Form(0.0, 0.0, batch_size * spatial_size(op.outputs[0]), False)]


def _activation_inputs(op):
  """The inputs of `op` that hold activations (not weights or parameters)."""
  if op.type == 'ConcatV2':
    # Input and output channels are the same channels, split in pieces.
    return [op.outputs[0]]
  skip = _SHAPE_INPUT.get(op.type)
  inputs = []
  for index, tensor in enumerate(op.inputs):
    if op.type in op_types.WEIGHTED_OP_TYPES and index == 1:
      continue  # The weights: the bilinear part.
    if index == skip or (index > 0 and (
        'FusedBatchNorm' in op.type or
        op.type in op_vocabulary.REDUCTION_OP_TYPES)):
      continue
    if tensor.shape.rank is not None and tensor.shape.rank < 2:
      continue  # Vectors and scalars are parameters (a bias, a scale).
    inputs.append(tensor)
  return inputs


def memory_forms(op, batch_size=1):
  """Bytes: activations in and out per example, weights once per batch."""
  inputs = 0.0
  for tensor in _activation_inputs(op):
    inputs += batch_size * spatial_size(tensor) * tensor.dtype.size
  if not op.outputs:
    return [Form(0.0, inputs, 0.0, False)]
  output = op.outputs[0]
  outputs = batch_size * spatial_size(output) * output.dtype.size
  weights = 0.0
  if is_flop_op(op):
    weights = output.dtype.size * num_weights_coeff(op)
  return [Form(weights, inputs, outputs, _is_depthwise(op))]


def latency_forms(op, peak_compute, memory_bandwidth, batch_size=1):
  """ns: [FLOPs / GFLOP/s, bytes / GB/s]; the op's latency is the larger."""
  compute = flop_forms(op, batch_size) or [Form(0.0, 0.0, 0.0, False)]
  return ([scale(compute[0], 1.0 / peak_compute)] +
          [scale(f, 1.0 / memory_bandwidth)
           for f in memory_forms(op, batch_size)])
