"""Network regularizers that target inference latency on a device.

Latency per op is max(compute time, memory time) on the device, in ns; the
device is a name of `resource_function.PEAK_COMPUTE`, a user's
`resource_function.Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s)`,
or a `latency_profile.LatencyProfile` measured on the user's machine (per op
kind: rates and a fixed per-op overhead; a path to its JSON file works too).
Each instance's `resource_function` is the latency function bound to its
hardware and batch size (there is none at class level).
`LogisticSigmoidLatencyRegularizer` is defined in
`logistic_sigmoid_regularizer`.
"""

from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import resource_regularizer

__all__ = ['GammaLatencyRegularizer', 'GroupLassoLatencyRegularizer',
           'LogisticSigmoidLatencyRegularizer']

LogisticSigmoidLatencyRegularizer = (
    logistic_sigmoid_regularizer.LogisticSigmoidLatencyRegularizer)


class GammaLatencyRegularizer(resource_regularizer.GammaRegularizer):
  """Latency regularizer whose sources are batch norm gammas.

  Args (others: see `resource_regularizer.GammaRegularizer`):
    hardware: device name (for example 'V100', 'H100'), Hardware tuple, or
      a latency profile measured on the device (a `LatencyProfile` or the
      path of its JSON file, see `latency_profile`).
    batch_size: the inference batch size.

  Raises:
    InvalidArgumentError: for an unknown device or a bad batch size.
    ProfileError: for a profile file that cannot be read.
  """
  name = 'GammaLatency'
  cost_name = 'Latency'
  resource_function = resource_regularizer.HardwareBoundResource()

  def __init__(self, output_boundary, gamma_threshold, hardware, batch_size=1,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None):
    resource_regularizer.HardwareBoundResource.bind(self, hardware,
                                                    batch_size)
    super().__init__(
        output_boundary, gamma_threshold,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist)


class GroupLassoLatencyRegularizer(resource_regularizer.GroupLassoRegularizer):
  """Latency regularizer whose sources are conv/matmul weights.

  Args (others: see `resource_regularizer.GroupLassoRegularizer`):
    hardware, batch_size: as in
      `latency_regularizer.GammaLatencyRegularizer` (a device name, Hardware
      tuple or measured latency profile; the inference batch size).

  Raises:
    InvalidArgumentError, ProfileError: as `GammaLatencyRegularizer`.
  """
  name = 'GroupLassoLatency'
  cost_name = 'Latency'
  resource_function = resource_regularizer.HardwareBoundResource()

  def __init__(self, output_boundary, threshold, hardware, batch_size=1,
               l1_fraction=0.0, regularizer_decorator=None,
               decorator_parameters=None, input_boundary=None,
               force_group=None, regularizer_blacklist=None):
    resource_regularizer.HardwareBoundResource.bind(self, hardware,
                                                    batch_size)
    super().__init__(
        output_boundary, threshold, l1_fraction,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist)
