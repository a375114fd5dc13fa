"""Resource functions: the cost of one op given its alive channels.

A resource function has the signature

    fn(op, is_regularization, num_alive_inputs, num_alive_outputs,
       reg_inputs, reg_outputs, batch_size=1)

and returns the op's cost when `is_regularization` is False, or the
regularization term when it is True: the cost with each alive count replaced
by the sum of the regularization vector of those channels. Costs are bilinear
in input and output channels, cost = C_op * in * out, so the term is
C_op * (in * sum(r_out) + out * sum(r_in)). Depthwise convolutions are linear:
cost = C_op * out, term = C_op * (sum(r_in) + sum(r_out)).

FLOPs count a multiply-add as 2. Latency is in nanoseconds: FLOPs divided by
peak GFLOP/s, bytes divided by GB/s.
"""

import collections
import functools
from typing import Union

import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_util

CONV_OP_TYPES = frozenset(['Conv2D', 'Conv3D'])
CONV_TRANSPOSE_OP_TYPES = frozenset(
    ['Conv2DBackpropInput', 'Conv3DBackpropInputV2'])
DEPTHWISE_OP_TYPES = frozenset(['DepthwiseConv2dNative'])
MATMUL_OP_TYPES = frozenset(
    ['MatMul', 'BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3'])
# Ops with weights whose cost is bilinear in input and output channels.
BILINEAR_OP_TYPES = CONV_OP_TYPES | CONV_TRANSPOSE_OP_TYPES | MATMUL_OP_TYPES
WEIGHTED_OP_TYPES = BILINEAR_OP_TYPES | DEPTHWISE_OP_TYPES
# Cheap ops that only move memory (counted by memory and latency functions).
ELEMENTWISE_MEMORY_OP_TYPES = frozenset([
    'Add', 'AddN', 'AddV2', 'AvgPool', 'BiasAdd', 'ConcatV2', 'Elu',
    'FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3', 'LeakyRelu',
    'MaxPool', 'Mul', 'Relu', 'Relu6', 'Sigmoid', 'Sub', 'Tanh'])
COSTED_OP_TYPES = WEIGHTED_OP_TYPES | ELEMENTWISE_MEMORY_OP_TYPES

# The original hardware table plus current devices. GFLOP/s are FP32 peaks
# (dense bf16 for TPUs); GB/s are memory bandwidths.
Hardware = collections.namedtuple('Hardware',
                                  ['peak_compute', 'memory_bandwidth'])
PEAK_COMPUTE = {
    'K80': 4100.0, 'P4': 5500.0, 'T4': 8100.0, 'P100': 9300.0,
    'V100': 15700.0, 'TPUv2': 22500.0, 'A100': 19500.0, 'H100': 67000.0,
    'L4': 30300.0, 'TPUv4': 137500.0,
    'FLOP_LATENCY': 1.0, 'MEMORY_LATENCY': 1e20,
}
MEMORY_BANDWIDTH = {
    'K80': 240.0, 'P4': 192.0, 'T4': 320.0, 'P100': 732.0, 'V100': 900.0,
    'TPUv2': 300.0, 'A100': 1555.0, 'H100': 3350.0, 'L4': 300.0,
    'TPUv4': 1200.0,
    'FLOP_LATENCY': 1e20, 'MEMORY_LATENCY': 1.0,
}


def _dims(shape, op, what):
  dims = shape.as_list() if shape.rank is not None else None
  if dims is None or any(d is None for d in dims[1:]):
    raise errors.UnsupportedGraphError(
        'Op %s has an unknown %s size (shape %s), so its cost cannot be '
        'computed. Build the model with a fixed input size, for example '
        'keras.Input(shape=(32, 32, 3)).' % (op_handler_util.describe_op(op),
                                             what, shape))
  return dims


def _prod(values):
  result = 1
  for v in values:
    result *= int(v)
  return result


def _input_tensor(op):
  return op.inputs[2] if op.type in CONV_TRANSPOSE_OP_TYPES else op.inputs[0]


def input_activation(op: tf.Operation) -> tf.Tensor:
  """The activation whose channels are the op's input channels."""
  return _input_tensor(op)


def _kernel_spatial_size(op):
  kernel = _dims(op.inputs[1].shape, op, 'kernel')
  return _prod(kernel[:-2])


def _group_count(op):
  """Channel groups of a grouped convolution (1 for ordinary convs)."""
  if op.type not in CONV_OP_TYPES:
    return 1
  in_channels = op_handler_util.get_num_channels(op.inputs[0])
  kernel_in = op.inputs[1].shape[-2]
  if not in_channels or not kernel_in:
    return 1
  return max(1, in_channels // int(kernel_in))


def _output_spatial_size(op):
  return _prod(_dims(op.outputs[0].shape, op, 'output')[1:-1])


def _input_spatial_size(op):
  return _prod(_dims(_input_tensor(op).shape, op, 'input')[1:-1])


def flop_coefficient(op: tf.Operation) -> float:
  """FLOPs per (input channel, output channel) pair of one example.

  Args:
    op: a tf.Operation.

  Returns:
    2 x output spatial size x kernel size for convs (divided by the number
    of groups), 2 x input spatial size x kernel size for transposed convs,
    2 x output spatial size x kernel size per channel for depthwise convs,
    2 x rows per example for matmuls; 0 for other ops.
  """
  if op.type in CONV_OP_TYPES:
    return (2.0 * _output_spatial_size(op) * _kernel_spatial_size(op) /
            _group_count(op))
  if op.type in CONV_TRANSPOSE_OP_TYPES:
    return 2.0 * _input_spatial_size(op) * _kernel_spatial_size(op)
  if op.type in DEPTHWISE_OP_TYPES:
    kernel = _dims(op.inputs[1].shape, op, 'kernel')
    return 2.0 * _output_spatial_size(op) * kernel[0] * kernel[1]
  if op.type in MATMUL_OP_TYPES:
    return 2.0 * _output_spatial_size(op)
  return 0.0


def weight_coefficient(op: tf.Operation) -> float:
  """Weights per (input, output) channel pair (per channel for depthwise)."""
  if op.type in CONV_OP_TYPES:
    return float(_kernel_spatial_size(op)) / _group_count(op)
  if op.type in CONV_TRANSPOSE_OP_TYPES:
    return float(_kernel_spatial_size(op))
  if op.type in DEPTHWISE_OP_TYPES:
    kernel = _dims(op.inputs[1].shape, op, 'kernel')
    return float(kernel[0] * kernel[1])
  if op.type in MATMUL_OP_TYPES:
    return 1.0 if op_handler_util.reads_variable(op.inputs[1]) else 0.0
  return 0.0


def _bilinear(coeff, is_regularization, num_alive_inputs, num_alive_outputs,
              reg_inputs, reg_outputs, depthwise):
  if depthwise:
    if is_regularization:
      return coeff * (reg_inputs + reg_outputs)
    return coeff * num_alive_outputs
  if is_regularization:
    return coeff * (num_alive_inputs * reg_outputs +
                    num_alive_outputs * reg_inputs)
  return coeff * num_alive_inputs * num_alive_outputs


def flop_function(op, is_regularization, num_alive_inputs, num_alive_outputs,
                  reg_inputs, reg_outputs, batch_size=1):
  """FLOPs of conv, depthwise, transposed conv and matmul ops."""
  if op.type not in WEIGHTED_OP_TYPES:
    return 0.0
  return batch_size * _bilinear(
      flop_coefficient(op), is_regularization, num_alive_inputs,
      num_alive_outputs, reg_inputs, reg_outputs,
      op.type in DEPTHWISE_OP_TYPES)


def model_size_function(op, is_regularization, num_alive_inputs,
                        num_alive_outputs, reg_inputs, reg_outputs,
                        batch_size=1):
  """Number of weights of conv, depthwise, transposed conv and matmul ops."""
  del batch_size  # Weights do not depend on the batch.
  if op.type not in WEIGHTED_OP_TYPES:
    return 0.0
  return _bilinear(weight_coefficient(op), is_regularization,
                   num_alive_inputs, num_alive_outputs, reg_inputs,
                   reg_outputs, op.type in DEPTHWISE_OP_TYPES)


def activation_count_function(op, is_regularization, num_alive_inputs,
                              num_alive_outputs, reg_inputs, reg_outputs,
                              batch_size=1):
  """Number of output activations of conv, depthwise and matmul ops."""
  del num_alive_inputs, reg_inputs  # Activations depend on outputs only.
  if op.type not in WEIGHTED_OP_TYPES:
    return 0.0
  per_channel = batch_size * _output_spatial_size(op)
  return per_channel * (reg_outputs if is_regularization else
                        num_alive_outputs)


def _bytes_per_element(op):
  return op.outputs[0].dtype.size if op.outputs else 4


def memory_function(op, is_regularization, num_alive_inputs,
                    num_alive_outputs, reg_inputs, reg_outputs, batch_size=1):
  """Bytes read and written: weights, input and output activations."""
  inputs = reg_inputs if is_regularization else num_alive_inputs
  outputs = reg_outputs if is_regularization else num_alive_outputs
  if op.type in WEIGHTED_OP_TYPES:
    weights = model_size_function(op, is_regularization, num_alive_inputs,
                                  num_alive_outputs, reg_inputs, reg_outputs)
    activations = batch_size * (_input_spatial_size(op) * inputs +
                                _output_spatial_size(op) * outputs)
    return _bytes_per_element(op) * (weights + activations)
  if op.type in ELEMENTWISE_MEMORY_OP_TYPES:
    rank = op.outputs[0].shape.rank
    if rank is None or rank < 2:
      return 0.0
    num_inputs = 1 if op.type == 'ConcatV2' else sum(
        1 for t in op.inputs if t.shape.rank == rank)
    in_spatial = _prod(_dims(op.inputs[0].shape, op, 'input')[1:-1])
    activations = batch_size * (num_inputs * in_spatial * inputs +
                                _output_spatial_size(op) * outputs)
    return _bytes_per_element(op) * activations
  return 0.0


def latency_function(op, is_regularization, num_alive_inputs,
                     num_alive_outputs, reg_inputs, reg_outputs,
                     peak_compute, memory_bandwidth, batch_size=1):
  """Latency in ns: max(FLOPs / peak GFLOP/s, bytes / GB/s).

  The regularization term is the compute or the memory term, whichever time
  dominates at the current alive counts.
  """
  args = (num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs)
  compute_time = flop_function(op, False, *args, batch_size) / peak_compute
  memory_time = memory_function(op, False, *args, batch_size) / memory_bandwidth
  if not is_regularization:
    if _is_python_number(compute_time) and _is_python_number(memory_time):
      return max(compute_time, memory_time)
    return tf.maximum(tf.cast(compute_time, tf.float32),
                      tf.cast(memory_time, tf.float32))
  compute_reg = flop_function(op, True, *args, batch_size) / peak_compute
  memory_reg = memory_function(op, True, *args, batch_size) / memory_bandwidth
  if _is_python_number(compute_time) and _is_python_number(memory_time):
    return compute_reg if compute_time >= memory_time else memory_reg
  return tf.where(compute_time >= memory_time,
                  tf.cast(compute_reg, tf.float32),
                  tf.cast(memory_reg, tf.float32))


def _is_python_number(value):
  return isinstance(value, (int, float))


# Op types each function can give a non-zero value for; the cost calculator
# skips other ops. A custom resource function may set the same attribute.
flop_function.costed_op_types = WEIGHTED_OP_TYPES
model_size_function.costed_op_types = WEIGHTED_OP_TYPES
activation_count_function.costed_op_types = WEIGHTED_OP_TYPES
memory_function.costed_op_types = COSTED_OP_TYPES
latency_function.costed_op_types = COSTED_OP_TYPES


def get_hardware(hardware: Union[str, Hardware, tuple]) -> Hardware:
  """Resolves a hardware name or a (GFLOP/s, GB/s) pair.

  Args:
    hardware: a key of PEAK_COMPUTE (for example 'V100', 'H100'), or a
      `Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s)` / pair for a
      device that is not in the table.

  Returns:
    A Hardware tuple.

  Raises:
    InvalidArgumentError: for an unknown name or non-positive numbers.
  """
  if isinstance(hardware, str):
    if hardware not in PEAK_COMPUTE:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `hardware`. Expected one of %s, or '
          'Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s). Received: '
          'hardware=%r' % (sorted(PEAK_COMPUTE), hardware))
    return Hardware(PEAK_COMPUTE[hardware], MEMORY_BANDWIDTH[hardware])
  try:
    result = Hardware(*[float(v) for v in hardware])
  except (TypeError, ValueError):
    result = None
  if result is None or result.peak_compute <= 0 or result.memory_bandwidth <= 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `hardware`. Expected a device name or a '
        'pair of positive numbers (GFLOP/s, GB/s). Received: hardware=%r' %
        (hardware,))
  return result


def latency_function_factory(hardware, batch_size=1):
  """Returns a resource function of latency on `hardware`.

  Args:
    hardware: a device name of the table or a (GFLOP/s, GB/s) pair.
    batch_size: the batch size the latency is measured at.

  Returns:
    A resource function.
  """
  device = get_hardware(hardware)
  fn = functools.partial(latency_function, peak_compute=device.peak_compute,
                         memory_bandwidth=device.memory_bandwidth)

  def latency_fn(op, is_regularization, num_alive_inputs, num_alive_outputs,
                 reg_inputs, reg_outputs, batch_size=batch_size):
    return fn(op, is_regularization, num_alive_inputs, num_alive_outputs,
              reg_inputs, reg_outputs, batch_size=batch_size)

  return latency_fn
