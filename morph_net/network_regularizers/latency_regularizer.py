"""Network regularizers that target latency on a named device.

Latency per op is max(compute time, memory time) on the device, in ns; the
device is a name of `resource_function.PEAK_COMPUTE` or a user's
`resource_function.Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s)`.
"""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer


class GammaLatencyRegularizer(resource_regularizer.GammaRegularizer):
  """Latency regularizer whose sources are batch norm gammas.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    gamma_threshold: channels with |gamma| at or below it are dead.
    hardware: device name (for example 'V100', 'H100') or Hardware tuple.
    batch_size: the batch size of inference.
    **kwargs: regularizer_decorator, decorator_parameters, input_boundary,
      force_group, regularizer_blacklist.
  """
  regularizer_name = 'GammaLatency'
  cost_name_ = 'Latency'

  def __init__(self, output_boundary, gamma_threshold, hardware,
               batch_size=1, **kwargs):
    self.resource_function = resource_function.latency_function_factory(
        hardware, batch_size)
    super().__init__(output_boundary, gamma_threshold, **kwargs)


class GroupLassoLatencyRegularizer(resource_regularizer.GroupLassoRegularizer):
  """Latency regularizer whose sources are conv/matmul weights.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    threshold: alive threshold on the group lasso norm.
    hardware: device name (for example 'V100', 'H100') or Hardware tuple.
    batch_size: the batch size of inference.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
    **kwargs: regularizer_decorator, decorator_parameters, input_boundary,
      force_group, regularizer_blacklist.
  """
  regularizer_name = 'GroupLassoLatency'
  cost_name_ = 'Latency'

  def __init__(self, output_boundary, threshold, hardware, batch_size=1,
               l1_fraction=0.0, **kwargs):
    self.resource_function = resource_function.latency_function_factory(
        hardware, batch_size)
    super().__init__(output_boundary, threshold, l1_fraction, **kwargs)
