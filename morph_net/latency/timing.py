"""Timing inference on this machine: pinned threads, interleaved medians.

Latency measured on a shared machine is noisy: other processes take cores
for a while, the CPU changes its clock. Two habits keep measurements
comparable: the functions compared run interleaved (one call of each, then
again, `repeats` times), so a slow spell hits all of them alike, and each is
summarised by its median (or, on a busy machine, its minimum), of the wall
time or, on a shared machine, of the process's CPU time (`CLOCKS`). Threads are pinned (`pin_threads`) so an op runs
on a known number of cores and ops run one after another, as the latency
model assumes (a sum over ops).
"""

import ctypes
import logging
import os
import platform
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from morph_net import errors

__all__ = ['STATISTICS', 'CLOCKS', 'ALLOCATORS', 'pin_threads',
           'thread_settings', 'set_allocator', 'allocator_settings',
           'model_call',
           'describe_device', 'cpu_model', 'time_rounds', 'time_interleaved']

# How the repeats of a call are summarised: the median (the default), or the
# minimum, the least disturbed run (steadier on a busy machine, where other
# processes preempt long calls more often than short ones).
STATISTICS = {'median': np.median, 'min': np.min}

# What a call's time is: 'wall', the elapsed time (the latency a user sees,
# on a quiet machine), or 'cpu', the CPU time the process spent in the call
# (all its threads). With one intra-op and one inter-op thread a forward pass
# runs on one core at a time, so its CPU time is its latency on an idle core
# without the time other processes held that core: on a shared machine it is
# much steadier than the wall time (measured here at load 8 on 2 cores:
# MobileNetV2 wall times 2.6-3x the CPU times, varying 15% from round to
# round, the CPU times 10%).
CLOCKS = {'wall': time.perf_counter_ns, 'cpu': time.process_time_ns}


def pin_threads(intra_op: int = 1, inter_op: int = 1) -> None:
  """Sets TensorFlow's intra-op and inter-op thread pools.

  Must run before TensorFlow executes its first op (at program start).

  Args:
    intra_op: threads one op may use (0: TensorFlow's default, all cores).
    inter_op: ops that may run at once; 1 runs them one after another.

  Raises:
    NotReadyError: if TensorFlow's runtime is already initialized with
      other settings.
  """
  if thread_settings() == {'intra_op': intra_op, 'inter_op': inter_op}:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
  except RuntimeError as e:
    raise errors.NotReadyError(
        'Cannot pin TensorFlow to %d intra-op / %d inter-op threads: the '
        'runtime already runs (%s). Call pin_threads at program start, '
        'before any TensorFlow op or Keras model.' % (intra_op, inter_op,
                                                      e)) from None


def thread_settings() -> Dict[str, int]:
  """{'intra_op': n, 'inter_op': n} as set (0: TensorFlow's default)."""
  return {
      'intra_op': tf.config.threading.get_intra_op_parallelism_threads(),
      'inter_op': tf.config.threading.get_inter_op_parallelism_threads()}


# How the process's memory allocator serves a model's tensors while it is
# timed (`set_allocator`):
# - 'steady': memory freed by one call is reused by the next, as in a
#   serving process whose allocator keeps its memory (tcmalloc, jemalloc,
#   or glibc once tuned): on glibc, mallopt(M_MMAP_MAX, 0) (no tensor gets
#   its own mapping) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) (freed memory
#   is not returned to the system). The process keeps its peak memory
#   until it exits.
# - 'default': the allocator as the process found it.
# Why: with glibc's defaults a tensor of at least the mmap threshold gets a
# fresh mapping on every call, whose pages fault in again; the threshold
# only rises to the size of the largest block freed so far, so how fast a
# model runs depends on what the process ran before. Measured here
# (MobileNetV2 96x96, batch 8, one thread, median of 15): 30.7 ms alone in
# a fresh process, 24.2-25.4 ms after calibration had timed larger layer
# variants in the same process, 25.0-25.3 ms steady from the first call.
ALLOCATORS = ('steady', 'default')
# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_STEADY = {'M_MMAP_MAX': (_M_MMAP_MAX, 0),
           'M_TRIM_THRESHOLD': (_M_TRIM_THRESHOLD, 2**31 - 1)}
# What `set_allocator` last did in this process.
_ALLOCATOR = {'mode': 'default', 'library': None, 'mallopt': {}}


def _glibc():
  """The C library as a ctypes handle when it is glibc, else None."""
  if platform.system() != 'Linux':
    return None
  try:
    libc = ctypes.CDLL(None)
    version = libc.gnu_get_libc_version
  except (OSError, AttributeError):
    return None
  version.restype = ctypes.c_char_p
  return libc, 'glibc ' + version().decode()


def set_allocator(mode: str = 'steady') -> Dict:
  """Sets how the process's allocator serves tensors while models are timed.

  'steady' makes a model's time independent of what the process ran before
  (see `ALLOCATORS`); on glibc it calls mallopt, for the rest of the
  process's life (the setting cannot be undone). Elsewhere (another C
  library, or an allocator preloaded with LD_PRELOAD, which mallopt does
  not reach) it logs a warning saying so and changes nothing.

  Args:
    mode: one of `ALLOCATORS`; 'default' changes nothing.

  Returns:
    `allocator_settings()`.

  Raises:
    InvalidArgumentError: for an unknown mode.
  """
  if mode not in ALLOCATORS:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `allocator`. Expected one of %s. '
        'Received: allocator=%r' % (', '.join(ALLOCATORS), mode))
  if mode == 'default' or _ALLOCATOR['mode'] == 'steady':
    return allocator_settings()
  preload = os.environ.get('LD_PRELOAD', '')
  libc = _glibc()
  if libc is None or any(name in preload for name in ('tcmalloc',
                                                       'jemalloc',
                                                       'mimalloc')):
    logging.warning(
        'allocator=steady: %s, so mallopt does not set how tensors are '
        'allocated; timings depend on that allocator (pass '
        "allocator='default' to silence this).",
        'LD_PRELOAD=%s' % preload if libc is not None else
        'the C library is not glibc')
    _ALLOCATOR.update(mode='unchanged', library=preload or platform.system())
    return allocator_settings()
  handle, library = libc
  done = {}
  for name, (parameter, value) in _STEADY.items():
    if handle.mallopt(parameter, value) != 1:
      logging.warning(
          'allocator=steady: mallopt(%s, %d) failed in %s, so timings '
          'depend on what the process ran before (pass '
          "allocator='default' to silence this).", name, value, library)
      _ALLOCATOR.update(mode='unchanged', library=library, mallopt=done)
      return allocator_settings()
    done[name] = value
  _ALLOCATOR.update(mode='steady', library=library, mallopt=done)
  return allocator_settings()


def allocator_settings() -> Dict:
  """{'mode': 'steady', 'default' or 'unchanged', 'library', 'mallopt'}:
  what `set_allocator` did in this process (recorded in measurement
  reports and profiles)."""
  return {'mode': _ALLOCATOR['mode'], 'library': _ALLOCATOR['library'],
          'mallopt': dict(_ALLOCATOR['mallopt'])}


def model_call(model, inputs) -> Callable[[], object]:
  """A model's forward pass as a deployment runs it, to time.

  The model traced once into a concrete function at the inputs' shapes
  (`training=False`), as a SavedModel signature or a serving system calls
  it, and called on these fixed inputs. Calling a `tf.function` instead
  pays its argument matching on every call: measured here about 0.6-0.9 ms
  (3%) more on MobileNetV2 96x96 at batch 8 than the concrete function,
  the same for uniform and normal inputs.

  Args:
    model: a Keras model (or any callable taking `training`).
    inputs: a tensor or array, or a list of them (one per model input),
      batch included.

  Returns:
    A function of no argument running the forward pass once.
  """
  listed = isinstance(inputs, (list, tuple))
  xs = [tf.convert_to_tensor(x) for x in (inputs if listed else [inputs])]
  specs = [tf.TensorSpec(x.shape, x.dtype) for x in xs]
  if listed:
    function = tf.function(lambda *ts: model(list(ts), training=False))
  else:
    function = tf.function(lambda t: model(t, training=False))
  concrete = function.get_concrete_function(*specs)
  return lambda: concrete(*xs)


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else `platform`'s processor."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return cpu


def describe_device() -> str:
  """'<cpu model> (<machine>), <n> intra-op / <m> inter-op threads'."""
  threads = thread_settings()
  return '%s (%s), %s intra-op / %s inter-op threads' % (
      cpu_model(), platform.machine(), threads['intra_op'] or 'default',
      threads['inter_op'] or 'default')


def _check_clock(clock):
  if clock not in CLOCKS:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `clock`. Expected one of %s. '
        'Received: clock=%r' % (', '.join(sorted(CLOCKS)), clock))


def time_rounds(calls: Sequence[Callable[[], object]], repeats: int,
                warmup: int = 2,
                on_round: Optional[Callable[[int], None]] = None,
                clock: str = 'wall', consecutive: int = 1) -> np.ndarray:
  """Every time of every call, interleaved: [repeats, len(calls)] ns.

  `warmup` untimed rounds, then `repeats` rounds calling every function
  `consecutive` times in a row, in order, and timing the last of them:
  with 2 or more, each timed call follows a call of its own, as in a
  deployment that calls one model again and again, not another model's
  call (whose tensors evict the caches; see
  `measurement.MeasurementSettings.consecutive`). Timing many models this
  way cycles through all their kernels every round: keep the calls few
  enough for the kernel caches (`measurement.measure` does).

  Args:
    calls: functions of no argument.
    repeats: timed rounds.
    warmup: untimed rounds first.
    on_round: called with the index of each timed round when it ends.
    clock: 'wall' or 'cpu' (see CLOCKS).
    consecutive: calls of each function in a row per round, the last
      timed.

  Returns:
    float64 [repeats, len(calls)].

  Raises:
    InvalidArgumentError: for repeats < 1, warmup < 0, consecutive < 1 or
      an unknown clock.
  """
  _check_clock(clock)
  if repeats < 1 or warmup < 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `repeats` or `warmup`. Expected '
        'repeats >= 1 and warmup >= 0. Received: repeats=%r, warmup=%r' %
        (repeats, warmup))
  if not isinstance(consecutive, int) or consecutive < 1:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `consecutive`. Expected an int >= 1 '
        '(calls of each function in a row per round). Received: '
        'consecutive=%r' % (consecutive,))
  now = CLOCKS[clock]
  for _ in range(warmup):
    for call in calls:
      call()
  times = np.zeros((repeats, len(calls)))
  for r in range(repeats):
    for i, call in enumerate(calls):
      for _ in range(consecutive - 1):
        call()
      start = now()
      call()
      times[r, i] = now() - start
    if on_round is not None:
      on_round(r)
  return times


def time_interleaved(calls: Sequence[Callable[[], object]], repeats: int,
                     warmup: int = 2,
                     on_round: Optional[Callable[[int], None]] = None,
                     statistic: str = 'median',
                     clock: str = 'wall') -> np.ndarray:
  """Wall time of each call (median of the repeats), in ns, interleaved.

  All calls in every round (`time_rounds`): right for a few calls; for
  many models or layer variants use `measurement.measure`, which times them
  in groups the kernel caches hold (all interleaved, the rounds re-create
  the kernels and time that instead of inference).

  Args:
    calls: functions of no argument (e.g. `lambda: fn(x)`); eager CPU
      execution is synchronous, so a call's time is its work.
    repeats: timed rounds; each round calls every function once.
    warmup: untimed rounds first (tracing, allocator warm-up).
    on_round: called with the index of each timed round when it ends.
    statistic: 'median' or 'min' of each call's repeats (see STATISTICS).
    clock: 'wall' or 'cpu' (see CLOCKS).

  Returns:
    float64 [len(calls)]: the statistic of each call's times, ns.

  Raises:
    InvalidArgumentError: for repeats < 1, warmup < 0, an unknown
      statistic or clock.
  """
  _check_clock(clock)
  if statistic not in STATISTICS:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `statistic`. Expected one of %s. '
        'Received: statistic=%r' % (', '.join(sorted(STATISTICS)), statistic))
  times = time_rounds(calls, repeats, warmup, on_round, clock)
  return STATISTICS[statistic](times, axis=0)
