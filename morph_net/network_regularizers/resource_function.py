"""Resource functions: the cost of one op given its alive channels.

A resource function has the original library's signature

    fn(op, is_regularization, num_alive_inputs, num_alive_outputs,
       reg_inputs, reg_outputs, batch_size=1)

and returns the op's cost when `is_regularization` is False, or its
regularization term when it is True: the cost with each alive count replaced
by the sum of the regularization vector of those channels. Costs are bilinear
in input and output channels, cost = C_op * in * out, so the term is
C_op * (in * sum(r_out) + out * sum(r_in)); depthwise convolutions are linear,
cost = C_op * out and term = C_op * (sum(r_in) + sum(r_out)) (MorphNet paper,
Gordon et al. 2018, section 3; the original's resource_function.py).

Units: FLOPs count a multiply-add as 2; model size counts weights; memory is
in bytes; latency is in ns (FLOPs / GFLOP/s, bytes / GB/s).

Static shapes give Python floats (so costs of unregularized ops need no graph
op); an unknown spatial size is read at run time with tf.shape, as the
original did, and gives a float32 tensor. Each function carries the op types
it can cost in `costed_op_types`, which the cost calculator uses to skip the
other ops; a custom function may set the same attribute.
"""

import math

import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_calculator
from morph_net.network_regularizers import hardware as hardware_lib

__all__ = [
    'PEAK_COMPUTE', 'MEMORY_BANDWIDTH', 'Hardware', 'get_hardware',
    'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES', 'DEPTHWISE_OP_TYPES',
    'MATMUL_OP_TYPES', 'WEIGHTED_OP_TYPES', 'ELEMENTWISE_MEMORY_OP_TYPES',
    'COSTED_OP_TYPES', 'is_flop_op', 'flop_coeff', 'num_weights_coeff',
    'flop_function', 'model_size_function', 'activation_count_function',
    'activation_size_function', 'memory_function', 'latency_function',
    'latency_function_factory',
]

PEAK_COMPUTE = hardware_lib.PEAK_COMPUTE
MEMORY_BANDWIDTH = hardware_lib.MEMORY_BANDWIDTH
Hardware = hardware_lib.Hardware
get_hardware = hardware_lib.get_hardware

CONV_OP_TYPES = cost_calculator.CONV_OP_TYPES
CONV_TRANSPOSE_OP_TYPES = cost_calculator.CONV_TRANSPOSE_OP_TYPES
DEPTHWISE_OP_TYPES = cost_calculator.DEPTHWISE_OP_TYPES
MATMUL_OP_TYPES = cost_calculator.MATMUL_OP_TYPES
WEIGHTED_OP_TYPES = cost_calculator.WEIGHTED_OP_TYPES
ELEMENTWISE_MEMORY_OP_TYPES = cost_calculator.ELEMENTWISE_MEMORY_OP_TYPES
COSTED_OP_TYPES = cost_calculator.COSTED_OP_TYPES

# Inputs of these op types that hold no activations: the output shape of a
# transposed conv, batch norm parameters, reduction indices.
_SHAPE_INPUT = {'Conv2DBackpropInput': 0, 'Conv3DBackpropInputV2': 0}
_REDUCTION_OP_TYPES = frozenset(['Sum', 'Mean', 'Max', 'Min', 'Prod'])


def is_flop_op(op: tf.Operation) -> bool:
  """Whether `op` does multiply-adds over channels (convs and matmuls).

  Raises:
    InvalidArgumentError: if `op` is not a tf.Operation.
  """
  if not isinstance(op, tf.Operation):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `op`. Expected a tf.Operation. Received: '
        '%r (%s)' % (op, type(op).__name__))
  return op.type in WEIGHTED_OP_TYPES


def _describe(op):
  return "'%s' (%s)" % (op.name, op.type)


def _kernel_size(op):
  """Product of the kernel's spatial dimensions (all but the last two)."""
  dims = op.inputs[1].shape.as_list()
  if dims is None or any(d is None for d in dims[:-2]):
    raise errors.UnsupportedGraphError(
        'Op %s has a kernel of unknown size (shape %s), so its cost cannot be '
        'computed. Give the kernel a static shape.' % (_describe(op),
                                                       op.inputs[1].shape))
  return math.prod(dims[:-2])


def _spatial_size(tensor):
  """Product of dims [1:-1]: an int, or a float32 tensor if not static."""
  shape = tensor.shape
  if shape.rank is not None:
    dims = shape.as_list()[1:-1]
    if all(d is not None for d in dims):
      return math.prod(dims)
  return tf.cast(tf.reduce_prod(tf.shape(tensor)[1:-1]), tf.float32)


def _group_count(op):
  """Channel groups of a grouped convolution (1 for other ops)."""
  if op.type not in CONV_OP_TYPES:
    return 1
  channels = tf.compat.dimension_value(op.inputs[0].shape[-1]) if (
      op.inputs[0].shape.rank) else None
  kernel_in = tf.compat.dimension_value(op.inputs[1].shape[-2])
  if not channels or not kernel_in:
    return 1
  return max(1, channels // kernel_in)


def flop_coeff(op: tf.Operation):
  """FLOPs per (input channel, output channel) pair, for one example.

  Args:
    op: a tf.Operation.

  Returns:
    2 x output spatial size x kernel size for Conv2D / Conv3D (divided by the
    groups of a grouped conv); 2 x input spatial size x kernel size for
    transposed convs (their input is the small side); 2 x output spatial size
    x kernel size per output channel for depthwise convs; 2 for MatMul (2 x
    rows per example for batched matmuls); 0 for other ops. A float, or a
    float32 tensor when a spatial size is only known at run time.
  """
  if not is_flop_op(op):
    return 0.0
  if op.type == 'MatMul':
    return 2.0
  if op.type in MATMUL_OP_TYPES:
    return 2.0 * _spatial_size(op.outputs[0])
  if op.type in CONV_TRANSPOSE_OP_TYPES:
    spatial = _spatial_size(cost_calculator.get_input_activation(op))
  else:
    spatial = _spatial_size(op.outputs[0])
  return 2.0 * spatial * _kernel_size(op) / _group_count(op)


def num_weights_coeff(op: tf.Operation) -> float:
  """Weights per (input, output) channel pair (per output channel, depthwise).

  Args:
    op: a tf.Operation.

  Returns:
    The kernel size for convs (divided by the groups of a grouped conv), 1
    for matmuls with variable weights, 0 for matmuls of two activations and
    for other ops.
  """
  if not is_flop_op(op):
    return 0.0
  if op.type in MATMUL_OP_TYPES:
    return 1.0 if cost_calculator.reads_variable(op.inputs[1]) else 0.0
  return float(_kernel_size(op)) / _group_count(op)


def _bilinear(op, coeff, is_regularization, num_alive_inputs,
              num_alive_outputs, reg_inputs, reg_outputs):
  """coeff x (in x out), or its regularization term; linear for depthwise."""
  if op.type in DEPTHWISE_OP_TYPES:
    if is_regularization:
      return coeff * (reg_inputs + reg_outputs)
    return coeff * num_alive_outputs
  if is_regularization:
    return coeff * (num_alive_inputs * reg_outputs +
                    num_alive_outputs * reg_inputs)
  return coeff * num_alive_inputs * num_alive_outputs


def flop_function(op, is_regularization, num_alive_inputs, num_alive_outputs,
                  reg_inputs, reg_outputs, batch_size=1):
  """FLOPs (or their regularization term) of conv and matmul ops.

  Args:
    op: a tf.Operation.
    is_regularization: return the regularization term instead of the cost.
    num_alive_inputs: alive input channels (number or scalar tensor).
    num_alive_outputs: alive output channels.
    reg_inputs: sum of the input channels' regularization vector.
    reg_outputs: sum of the output channels' regularization vector.
    batch_size: examples per inference.

  Returns:
    batch_size x flop_coeff(op) x in x out (depthwise: x out), or the term;
    0.0 for ops without FLOPs.
  """
  if not is_flop_op(op):
    return 0.0
  return _bilinear(op, batch_size * flop_coeff(op), is_regularization,
                   num_alive_inputs, num_alive_outputs, reg_inputs,
                   reg_outputs)


def model_size_function(op, is_regularization, num_alive_inputs,
                        num_alive_outputs, reg_inputs, reg_outputs,
                        batch_size=1):
  """Number of weights (or its term) of conv and matmul ops; biases excluded.

  Args: as `flop_function`; batch_size is ignored.

  Returns:
    num_weights_coeff(op) x in x out (depthwise: x out), or the term.
  """
  del batch_size  # Weights do not depend on the batch.
  if not is_flop_op(op):
    return 0.0
  return _bilinear(op, num_weights_coeff(op), is_regularization,
                   num_alive_inputs, num_alive_outputs, reg_inputs,
                   reg_outputs)


def activation_count_function(op, is_regularization, num_alive_inputs,
                              num_alive_outputs, reg_inputs, reg_outputs,
                              batch_size=1):
  """Output channels of conv and matmul ops (the original's activation count).

  Every output channel counts 1, whatever its spatial size.

  Args: as `flop_function`; inputs and batch_size are ignored.

  Returns:
    num_alive_outputs (reg_outputs for the term); 0.0 for other ops.
  """
  del num_alive_inputs, reg_inputs, batch_size  # Outputs only.
  if not is_flop_op(op):
    return 0.0
  return reg_outputs if is_regularization else num_alive_outputs


def activation_size_function(op, is_regularization, num_alive_inputs,
                             num_alive_outputs, reg_inputs, reg_outputs,
                             batch_size=1):
  """Output activations (positions x channels) of conv and matmul ops.

  Args: as `flop_function`; inputs are ignored.

  Returns:
    batch_size x output spatial size x num_alive_outputs (x reg_outputs for
    the term); 0.0 for other ops.
  """
  del num_alive_inputs, reg_inputs  # Outputs only.
  if not is_flop_op(op):
    return 0.0
  per_channel = batch_size * _spatial_size(op.outputs[0])
  return per_channel * (reg_outputs if is_regularization else
                        num_alive_outputs)


def _activation_inputs(op):
  """The inputs of `op` that hold activations (not weights or parameters)."""
  if op.type == 'ConcatV2':
    # Input and output channels are the same channels, split in pieces.
    return [op.outputs[0]]
  skip = _SHAPE_INPUT.get(op.type)
  inputs = []
  for index, tensor in enumerate(op.inputs):
    if op.type in WEIGHTED_OP_TYPES and index == 1:
      continue  # The weights, counted by the bilinear term.
    if index == skip or (index > 0 and (
        'FusedBatchNorm' in op.type or op.type in _REDUCTION_OP_TYPES)):
      continue
    if tensor.shape.rank is not None and tensor.shape.rank < 2:
      continue  # Vectors and scalars are parameters (a bias, a scale).
    inputs.append(tensor)
  return inputs


def _memory_bytes(op, is_regularization, num_alive_inputs, num_alive_outputs,
                  reg_inputs, reg_outputs, batch_size):
  """`memory_function` as a Python number when everything is static."""
  inputs = reg_inputs if is_regularization else num_alive_inputs
  outputs = reg_outputs if is_regularization else num_alive_outputs
  total = 0.0
  for tensor in _activation_inputs(op):
    total += (batch_size * _spatial_size(tensor) * tensor.dtype.size *
              inputs)
  if op.outputs:
    output = op.outputs[0]
    total += (batch_size * _spatial_size(output) * output.dtype.size *
              outputs)
    if op.type in WEIGHTED_OP_TYPES:
      total += output.dtype.size * model_size_function(
          op, is_regularization, num_alive_inputs, num_alive_outputs,
          reg_inputs, reg_outputs)
  return total


def memory_function(op, is_regularization, num_alive_inputs,
                    num_alive_outputs, reg_inputs, reg_outputs, batch_size=1):
  """Bytes read and written by `op`: input and output activations, weights.

  Activations count spatial size x channels x dtype size per example (every
  activation input of an Add counts); weights count like model size, once
  per batch. Concat counts its output twice (its inputs are the same
  channels). Biases, batch norm parameters and other vectors are not counted.

  Args: as `flop_function`.

  Returns:
    Bytes (or the term), a float32 tensor (as the original's).
  """
  return tf.convert_to_tensor(
      _memory_bytes(op, is_regularization, num_alive_inputs,
                    num_alive_outputs, reg_inputs, reg_outputs, batch_size),
      tf.float32)


def _is_number(value):
  return isinstance(value, (int, float))


def latency_function(op, is_regularization, num_alive_inputs,
                     num_alive_outputs, reg_inputs, reg_outputs,
                     peak_compute, memory_bandwidth, batch_size=1):
  """Latency in ns: max(FLOPs / peak GFLOP/s, bytes / GB/s).

  Compute and memory traffic are assumed to overlap, so the slower of the two
  is the op's latency (as in the original). The regularization term is the
  compute or the memory term, whichever time dominates at the current alive
  counts.

  Args:
    op, is_regularization, num_alive_inputs, num_alive_outputs, reg_inputs,
      reg_outputs, batch_size: as `flop_function`.
    peak_compute: the device's peak, GFLOP/s.
    memory_bandwidth: the device's memory bandwidth, GB/s.

  Returns:
    Latency (or its term) in ns, a float32 tensor (as the original's).
  """
  args = (num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs,
          batch_size)
  compute_time = flop_function(op, False, *args) / peak_compute
  memory_time = _memory_bytes(op, False, *args) / memory_bandwidth
  if is_regularization:
    compute_term = flop_function(op, True, *args) / peak_compute
    memory_term = _memory_bytes(op, True, *args) / memory_bandwidth
  if _is_number(compute_time) and _is_number(memory_time):
    if not is_regularization:
      value = max(compute_time, memory_time)
    else:
      value = memory_term if memory_time > compute_time else compute_term
    return tf.convert_to_tensor(value, tf.float32)
  compute_time = tf.cast(compute_time, tf.float32)
  memory_time = tf.cast(memory_time, tf.float32)
  if not is_regularization:
    return tf.maximum(compute_time, memory_time)
  return tf.where(memory_time > compute_time,
                  tf.cast(memory_term, tf.float32),
                  tf.cast(compute_term, tf.float32))


flop_function.costed_op_types = WEIGHTED_OP_TYPES
model_size_function.costed_op_types = WEIGHTED_OP_TYPES
activation_count_function.costed_op_types = WEIGHTED_OP_TYPES
activation_size_function.costed_op_types = WEIGHTED_OP_TYPES
memory_function.costed_op_types = COSTED_OP_TYPES
latency_function.costed_op_types = COSTED_OP_TYPES


def latency_function_factory(hardware, batch_size=1):
  """Returns the latency resource function of a device.

  Args:
    hardware: a device name of PEAK_COMPUTE, or a Hardware / (GFLOP/s, GB/s)
      pair.
    batch_size: the inference batch size the latency is for (positive).

  Returns:
    A resource function of the original's six-argument signature (a
    `batch_size` keyword overrides the bound one), with attributes
    `hardware` (the Hardware tuple), `batch_size` and `costed_op_types`.

  Raises:
    InvalidArgumentError: for an unknown device or a non-positive batch size.
  """
  device = hardware_lib.get_hardware(hardware)
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `batch_size`. Expected a positive '
        'integer. Received: batch_size=%r' % (batch_size,))
  bound_batch_size = batch_size

  def latency_for_hardware(op, is_regularization, num_alive_inputs,
                           num_alive_outputs, reg_inputs, reg_outputs,
                           batch_size=bound_batch_size):
    return latency_function(op, is_regularization, num_alive_inputs,
                            num_alive_outputs, reg_inputs, reg_outputs,
                            device.peak_compute, device.memory_bandwidth,
                            batch_size)

  latency_for_hardware.hardware = device
  latency_for_hardware.batch_size = bound_batch_size
  latency_for_hardware.costed_op_types = COSTED_OP_TYPES
  return latency_for_hardware
