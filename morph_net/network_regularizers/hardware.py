"""Devices a latency cost is computed for: peak compute and memory bandwidth.

`PEAK_COMPUTE` (GFLOP/s) and `MEMORY_BANDWIDTH` (GB/s) hold the original
library's devices with the original's numbers (K80, P4, T4, P100, V100,
TPUv2; for V100 that is 125,000 GFLOP/s, its tensor-core FP16 peak -- its
FP32 peak is 15,700; pass `Hardware(15700, 900)` to cost FP32 inference),
plus current devices (A100, H100, L4 at FP32; TPUv4 at dense bf16).
FLOP_LATENCY and MEMORY_LATENCY are test devices whose latency is the FLOP count (1 GFLOP/s,
unlimited bandwidth) or the byte count (1 GB/s, unlimited compute) in ns.

A device that is not in the table is a `Hardware(peak_compute=GFLOP/s,
memory_bandwidth=GB/s)` tuple (or a plain pair), accepted everywhere a name is.
"""

import collections
from typing import Tuple, Union

from morph_net import errors

__all__ = ['Hardware', 'PEAK_COMPUTE', 'MEMORY_BANDWIDTH', 'get_hardware']

Hardware = collections.namedtuple('Hardware',
                                  ['peak_compute', 'memory_bandwidth'])

PEAK_COMPUTE = {  # GFLOP/s.
    'K80': 8740, 'P4': 5500, 'T4': 8100, 'P100': 9300, 'V100': 125000,
    'TPUv2': 22500, 'A100': 19500, 'H100': 67000, 'L4': 30300,
    'TPUv4': 137500, 'FLOP_LATENCY': 1, 'MEMORY_LATENCY': 1e20,
}
MEMORY_BANDWIDTH = {  # GB/s.
    'K80': 480, 'P4': 192, 'T4': 300, 'P100': 732, 'V100': 900, 'TPUv2': 300,
    'A100': 1555, 'H100': 3350, 'L4': 300, 'TPUv4': 1200,
    'FLOP_LATENCY': 1e20, 'MEMORY_LATENCY': 1,
}


def get_hardware(hardware: Union[str, Hardware, Tuple[float, float]]
                 ) -> Hardware:
  """Resolves a device name or a (GFLOP/s, GB/s) pair.

  Args:
    hardware: a key of PEAK_COMPUTE (for example 'V100', 'H100'), or a
      `Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s)` or pair for a
      device that is not in the table.

  Returns:
    A Hardware tuple of floats.

  Raises:
    InvalidArgumentError: for an unknown name, or anything else than a pair of
      positive numbers.
  """
  if isinstance(hardware, str):
    if hardware not in PEAK_COMPUTE:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `hardware`. Expected one of %s, '
          'Hardware(peak_compute=GFLOP/s, memory_bandwidth=GB/s), or a '
          'measured latency profile (a .json path or a LatencyProfile). '
          'Received: hardware=%r' % (sorted(PEAK_COMPUTE), hardware))
    return Hardware(float(PEAK_COMPUTE[hardware]),
                    float(MEMORY_BANDWIDTH[hardware]))
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
