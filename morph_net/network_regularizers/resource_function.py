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

Static shapes give Python numbers (memory and latency return float32 tensors,
as the original's did); an unknown spatial size is read at run time with
tf.shape, as the original did. Each built-in function carries two attributes
the cost calculator uses, and a custom function may set them too:
`costed_op_types` (the op types it can give a non-zero value for) and
`forms(op, batch_size=...)` (its coefficients, see `cost_forms`), with which
the calculator costs all ops of a network in a few graph ops.

Names: this module keeps the original's names (PEAK_COMPUTE,
MEMORY_BANDWIDTH, flop_coeff, num_weights_coeff, is_flop_op and the
resource functions). Op-type sets come from `op_types` (which the costs
read) and `morph_net.framework.op_vocabulary` (where every set is defined);
the seven sets this module used to re-export (CONV_OP_TYPES,
CONV_TRANSPOSE_OP_TYPES, DEPTHWISE_OP_TYPES, MATMUL_OP_TYPES,
WEIGHTED_OP_TYPES, ELEMENTWISE_MEMORY_OP_TYPES, COSTED_OP_TYPES) still
import from here, with a DeprecationWarning naming `op_types`.
"""

import warnings

import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import hardware as hardware_lib
from morph_net.network_regularizers import profile_resource
from morph_net.network_regularizers import op_types

__all__ = [
    'PEAK_COMPUTE', 'MEMORY_BANDWIDTH', 'Hardware', 'get_hardware',
    'is_flop_op', 'flop_coeff', 'num_weights_coeff',
    'flop_function', 'model_size_function', 'activation_count_function',
    'activation_size_function', 'memory_function', 'latency_function',
    'latency_function_factory',
]

PEAK_COMPUTE = hardware_lib.PEAK_COMPUTE
MEMORY_BANDWIDTH = hardware_lib.MEMORY_BANDWIDTH
Hardware = hardware_lib.Hardware
get_hardware = hardware_lib.get_hardware

is_flop_op = cost_forms.is_flop_op
flop_coeff = cost_forms.flop_coeff
num_weights_coeff = cost_forms.num_weights_coeff

# Op-type sets this module re-exported before they had one home; they
# import from here with a DeprecationWarning (see `__getattr__`).
_MOVED_TO_OP_TYPES = frozenset([
    'CONV_OP_TYPES', 'CONV_TRANSPOSE_OP_TYPES', 'DEPTHWISE_OP_TYPES',
    'MATMUL_OP_TYPES', 'WEIGHTED_OP_TYPES', 'ELEMENTWISE_MEMORY_OP_TYPES',
    'COSTED_OP_TYPES'])


def __getattr__(name):
  """The deprecated op-type sets (`op_types.<name>`), with a warning.

  Raises:
    AttributeError: for other missing names.
  """
  if name in _MOVED_TO_OP_TYPES:
    warnings.warn(
        'morph_net.network_regularizers.resource_function.%s is deprecated: '
        'import it from morph_net.network_regularizers.op_types (op-type '
        'sets are defined in morph_net.framework.op_vocabulary).' % name,
        DeprecationWarning, stacklevel=2)
    return getattr(op_types, name)
  raise AttributeError('module %r has no attribute %r' % (__name__, name))

def flop_function(op, is_regularization, num_alive_inputs, num_alive_outputs,
                  reg_inputs, reg_outputs, batch_size=1):
  """FLOPs of conv and matmul ops: batch x flop_coeff x IN x OUT.

  Depthwise convs: batch x flop_coeff x OUT.

  Args (the same for every resource function):
    op: a tf.Operation.
    is_regularization: return the regularization term instead of the cost.
    num_alive_inputs: alive input channels IN (a number or scalar tensor).
    num_alive_outputs: alive output channels OUT.
    reg_inputs: sum of the input channels' regularization vector RIN.
    reg_outputs: sum of the output channels' regularization vector ROUT.
    batch_size: examples per inference.

  Returns:
    The cost or term; 0.0 for ops without FLOPs. A Python number when the
    arguments are numbers and the shapes static, else a float32 tensor.
  """
  return cost_forms.evaluate(
      cost_forms.flop_forms(op, batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs)


def model_size_function(op, is_regularization, num_alive_inputs,
                        num_alive_outputs, reg_inputs, reg_outputs,
                        batch_size=1):
  """Weights of conv and matmul ops: num_weights_coeff x IN x OUT.

  Depthwise convs: kernel size x OUT. Biases are not counted.

  Args: see `flop_function`; batch_size is ignored.

  Returns:
    The cost or term; 0.0 for other ops.
  """
  return cost_forms.evaluate(
      cost_forms.model_size_forms(op, batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs)


def activation_count_function(op, is_regularization, num_alive_inputs,
                              num_alive_outputs, reg_inputs, reg_outputs,
                              batch_size=1):
  """Output channels of conv and matmul ops (the original's activation count).

  Every output channel counts 1 whatever its spatial size.

  Args: see `flop_function`; inputs and batch_size are ignored.

  Returns:
    OUT (the term: ROUT); 0.0 for other ops.
  """
  return cost_forms.evaluate(
      cost_forms.activation_count_forms(op, batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs)


def activation_size_function(op, is_regularization, num_alive_inputs,
                             num_alive_outputs, reg_inputs, reg_outputs,
                             batch_size=1):
  """Output activations (positions x channels) of conv and matmul ops.

  Args: see `flop_function`; inputs are ignored.

  Returns:
    batch x output spatial size x OUT (the term: x ROUT); 0.0 for other ops.
  """
  return cost_forms.evaluate(
      cost_forms.activation_size_forms(op, batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs)


def memory_function(op, is_regularization, num_alive_inputs,
                    num_alive_outputs, reg_inputs, reg_outputs, batch_size=1):
  """Bytes read and written by `op`: input and output activations, weights.

  Activations count spatial size x channels x dtype size per example (every
  activation input of an Add counts); weights count like model size, once per
  batch. Concat counts its output twice (its inputs are the same channels).
  Biases, batch norm parameters and other vectors are not counted.

  Args: see `flop_function`.

  Returns:
    A float32 scalar tensor (as the original's).
  """
  return tf.convert_to_tensor(cost_forms.evaluate(
      cost_forms.memory_forms(op, batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs),
                              tf.float32)


def latency_function(op, is_regularization, num_alive_inputs,
                     num_alive_outputs, reg_inputs, reg_outputs,
                     peak_compute, memory_bandwidth, batch_size=1):
  """Latency in ns: max(FLOPs / peak GFLOP/s, bytes / GB/s).

  Compute and memory traffic are assumed to overlap, so the slower of the two
  is the op's latency (as in the original). The term is the compute or the
  memory term, whichever time dominates at the current alive counts.

  Args (others: see `flop_function`):
    peak_compute: the device's peak, GFLOP/s.
    memory_bandwidth: the device's memory bandwidth, GB/s.

  Returns:
    A float32 scalar tensor (as the original's).
  """
  return tf.convert_to_tensor(cost_forms.evaluate(
      cost_forms.latency_forms(op, peak_compute, memory_bandwidth,
                               batch_size), is_regularization,
      num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs),
                              tf.float32)


for _function, _forms, _types in (
    (flop_function, cost_forms.flop_forms, op_types.WEIGHTED_OP_TYPES),
    (model_size_function, cost_forms.model_size_forms,
     op_types.WEIGHTED_OP_TYPES),
    (activation_count_function, cost_forms.activation_count_forms,
     op_types.WEIGHTED_OP_TYPES),
    (activation_size_function, cost_forms.activation_size_forms,
     op_types.WEIGHTED_OP_TYPES),
    (memory_function, cost_forms.memory_forms, op_types.COSTED_OP_TYPES)):
  _function.forms = _forms
  _function.costed_op_types = _types
del _function, _forms, _types
latency_function.costed_op_types = op_types.COSTED_OP_TYPES


def latency_function_factory(hardware, batch_size=1):
  """Returns the latency resource function of a device.

  Args:
    hardware: a device name of PEAK_COMPUTE, a Hardware / (GFLOP/s, GB/s)
      pair, or a measured `latency_profile.LatencyProfile` (or the path of
      its JSON file), whose per-op-kind rates and overheads are used instead
      of a roofline.
    batch_size: the inference batch size the latency is for (positive).

  Returns:
    A resource function of the original's six-argument signature (a
    `batch_size` keyword overrides the bound one), with attributes `hardware`
    (the Hardware tuple or the LatencyProfile), `batch_size`,
    `costed_op_types` and `forms`.

  Raises:
    InvalidArgumentError: for an unknown device or a non-positive batch size.
    ProfileError: for a profile file that cannot be read.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or (
      batch_size <= 0):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `batch_size`. Expected a positive '
        'integer. Received: batch_size=%r' % (batch_size,))
  if profile_resource.is_profile_argument(hardware):
    return profile_resource.latency_function_factory(hardware, batch_size)
  device = hardware_lib.get_hardware(hardware)
  bound_batch_size = batch_size

  def latency_for_hardware(op, is_regularization, num_alive_inputs,
                           num_alive_outputs, reg_inputs, reg_outputs,
                           batch_size=bound_batch_size):
    return latency_function(op, is_regularization, num_alive_inputs,
                            num_alive_outputs, reg_inputs, reg_outputs,
                            device.peak_compute, device.memory_bandwidth,
                            batch_size)

  def forms(op, batch_size=bound_batch_size):
    return cost_forms.latency_forms(op, device.peak_compute,
                                    device.memory_bandwidth, batch_size)

  latency_for_hardware.hardware = device
  latency_for_hardware.batch_size = bound_batch_size
  latency_for_hardware.costed_op_types = op_types.COSTED_OP_TYPES
  latency_for_hardware.forms = forms
  return latency_for_hardware
