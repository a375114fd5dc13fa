"""Timing as a deployed model runs: warm, in groups the kernel caches hold.

One method for everything that times models on this machine: calibration
(`variants.measure_variants`), `benchmarks/latency_prediction.py` and
`benchmarks/rebuilt_latency.py`.

Why not one call of every model per round: TensorFlow's oneDNN kernels keep
their primitives (the JIT-compiled kernels) in a per-thread LRU cache of
1024 entries (`MklPrimitiveFactory`, fixed in TF 2.21, not configurable), in
front of oneDNN's own primitive cache (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`,
default 1024, read from the environment when oneDNN first runs). Rounds
that cycle through more primitives than that re-create every kernel of
every call: what is timed is kernel creation, not inference. Measured
here (TF 2.21, oneDNN 3.7): 60 programs of 20 small convolutions
interleaved re-created all 1,200 primitives in every round
(`tests/latency/test_measurement.py` counts them in oneDNN's log); 30 of
them, 600 primitives, re-created none after the first rounds, even with
oneDNN's own cache at 8 entries. A deployed model runs the same kernels
again and again and never pays that.

The method (`measure`):

1. The calls are packed, in order, into groups whose kernel weight
   (`kernel_weight`: about the primitives a call's ops create) stays within
   a budget (`group_by_budget`). The budget is given, or found by measuring
   (`probe_budget`: from the safe default, `default_budget`, half the
   per-thread cache, a group filled to a candidate budget, timed
   interleaved, must not be slower than its members timed one at a time;
   the candidate is halved until it is), or the default unprobed.
2. Within a group, every call runs `warmup` times first (its function
   traced, its kernels built and cached), then each of `repeats` rounds
   calls every member `consecutive` times in a row and times the last:
   interleaved, so a slow spell of a shared machine hits all members
   alike, and each timed call follows a call of its own, as a deployed
   model's does (`MeasurementSettings.consecutive`).
3. Each call is summarised by its statistic (median, or min) and its
   quartiles; a call whose IQR / median is above `unstable_spread` is
   measured again with its group, up to `max_attempts` times in all, then
   flagged (`MeasurementReport.flagged`).
4. `shared` calls (e.g. an identity function giving the call overhead) are
   timed in every group, so a quantity subtracted from a call is measured
   beside it.

The allocator is set steady first (`MeasurementSettings.allocator`,
`timing.set_allocator`): with glibc's defaults a model's large tensors get
fresh pages on every call, and how many depends on what the process ran
before (MobileNetV2 96x96, batch 8: 30.7 ms in a fresh process, 24-25 ms
after calibration's variants, 25.0-25.3 ms steady).

Thread settings are the process's (`timing.pin_threads`), recorded in the
report with the budget, how it was found, the cache capacities and whether
TensorFlow runs oneDNN kernels at all (`onednn_enabled`; on CPUs where it
does not, Eigen kernels have no such cache, and the grouping costs
nothing).
"""

import collections
import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from morph_net import errors
from morph_net.latency import timing

__all__ = [
    'TF_PRIMITIVE_CACHE', 'DEFAULT_PRIMITIVE_CACHE', 'CAPACITY_VARIABLES',
    'KERNEL_KINDS', 'Measurement', 'MeasurementSettings', 'MeasurementReport',
    'primitive_cache_capacity', 'onednn_enabled', 'default_budget',
    'kernel_weight', 'group_by_budget', 'summarize', 'probe_budget',
    'measure',
]

# Entries of TensorFlow's per-thread oneDNN primitive cache (fixed).
TF_PRIMITIVE_CACHE = 1024
# oneDNN's default primitive cache capacity, and the variables setting it
# (oneDNN reads the first that is set, when it first runs).
DEFAULT_PRIMITIVE_CACHE = 1024
CAPACITY_VARIABLES = ('ONEDNN_PRIMITIVE_CACHE_CAPACITY',
                      'DNNL_PRIMITIVE_CACHE_CAPACITY')
# Op kinds (`latency_profile.OP_KINDS`) whose TensorFlow kernels create
# oneDNN primitives: each about two (the op, and a reorder of its weights or
# input).
KERNEL_KINDS = ('conv', 'depthwise', 'conv_transpose', 'matmul', 'pool')

# One call's timing: `value_ns` is the statistic (median or min) of its
# `repeats` times; q1/median/q3 their quartiles; `spread` IQR / median;
# `group` the index of its group; `attempts` how often it was measured;
# `unstable` whether its spread stayed above the threshold; `times_ns` the
# repeats' times of its last attempt, in round order (the members of a
# group are timed once per round, so round i of two members of one group
# ran side by side).
Measurement = collections.namedtuple(
    'Measurement', ['label', 'value_ns', 'median_ns', 'q1_ns', 'q3_ns',
                    'spread', 'group', 'attempts', 'unstable', 'times_ns'],
    defaults=(None,))


@dataclasses.dataclass(frozen=True)
class MeasurementSettings:
  """How `measure` times.

  Attributes:
    repeats: timed rounds per group.
    warmup: untimed calls of every member of a group before its rounds
      (at least one is made: a function's first run instantiates it and
      builds its kernels, which a deployed model never pays again).
    statistic: 'median' or 'min' of each call's times (`timing.STATISTICS`).
    clock: 'wall' or 'cpu' (`timing.CLOCKS`).
    budget: kernel weight per group (`kernel_weight`); None: found by
      `probe_budget` when `probe` is set, else `default_budget()`.
    probe: find the budget by measuring when none is given.
    probe_repeats: interleaved rounds (and calls of each member alone) per
      probed budget.
    slowdown_tolerance: a probed group is too large when its members,
      timed interleaved, take more than (1 + this) x their time alone.
    unstable_spread: IQR / median above which a call is measured again.
    max_attempts: measurements of a group with an unstable call, in all,
      before the call is flagged.
    consecutive: calls of each member in a row per round, the last timed
      (at least 1). A deployed model is called again and again, so its
      weights and buffers are in the caches when a call starts; a call
      right after another model's finds them evicted. Measured here (AMD
      EPYC, 1 thread, MobileNetV2 alpha 0.35 32x32, batch 64, the original
      and three structures of 6.1-6.6 ms in one group): timed after the
      previous member's call the structures took 12-14% longer (6.93-7.12
      ms), the original (10.8-11.0 ms) the same; timing the second of two
      calls in a row removed it, a third changed nothing (1%). 1 times
      every call after the previous member's.
      (`timing.set_allocator`, set when `measure` starts): 'steady' (memory
      reused from call to call, so a call's time does not depend on what
      the process ran before) or 'default' (left as it is).

  Raises:
    InvalidArgumentError: for repeats, probe_repeats, max_attempts or
      consecutive below 1, a negative warmup, tolerance or spread, a budget
      below 1, an unknown statistic, clock or allocator.
  """
  repeats: int = 15
  warmup: int = 3
  statistic: str = 'median'
  clock: str = 'wall'
  budget: Optional[int] = None
  probe: bool = True
  probe_repeats: int = 5
  slowdown_tolerance: float = 0.1
  unstable_spread: float = 0.1
  max_attempts: int = 3
  allocator: str = 'steady'
  consecutive: int = 2

  def __post_init__(self):
    for name in ('repeats', 'probe_repeats', 'max_attempts', 'consecutive'):
      _check(name, getattr(self, name), 1)
    _check('warmup', self.warmup, 0)
    if self.budget is not None:
      _check('budget', self.budget, 1)
    for name in ('slowdown_tolerance', 'unstable_spread'):
      value = getattr(self, name)
      if not (isinstance(value, (int, float)) and value >= 0):
        raise errors.InvalidArgumentError(
            'Invalid value for argument `%s`. Expected a number >= 0. '
            'Received: %s=%r' % (name, name, value))
    for name, table in (('statistic', timing.STATISTICS),
                        ('clock', timing.CLOCKS),
                        ('allocator', timing.ALLOCATORS)):
      if getattr(self, name) not in table:
        raise errors.InvalidArgumentError(
            'Invalid value for argument `%s`. Expected one of %s. '
            'Received: %s=%r' % (name, ', '.join(sorted(table)), name,
                                 getattr(self, name)))


def _check(name, value, lowest):
  if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `%s`. Expected an integer >= %d. '
        'Received: %s=%r' % (name, lowest, name, value))


@dataclasses.dataclass
class MeasurementReport:
  """What `measure` timed and how.

  Attributes:
    measurements: one Measurement per call, in the calls' order.
    shared: per group, one Measurement per shared call.
    groups: the indices of the calls of each group.
    budget: the kernel weight per group used.
    budget_source: 'given', 'probed' or 'default'.
    probe: the probed budgets: {budget, members, alone_ns, grouped_ns,
      ratio} each (grouped / alone), largest first.
    settings: the MeasurementSettings as a dict.
    environment: threads, device, cache capacities, oneDNN.
  """
  measurements: List[Measurement]
  shared: List[List[Measurement]]
  groups: List[List[int]]
  budget: int
  budget_source: str
  probe: List[Dict]
  settings: Dict
  environment: Dict

  def values(self) -> np.ndarray:
    """float64 [calls]: each call's statistic, ns."""
    return np.array([m.value_ns for m in self.measurements], np.float64)

  def drift_corrected(self, shared_index: int = 0) -> np.ndarray:
    """float64 [calls]: each call's statistic, relative to a shared call.

    Groups are timed one after another, so a machine that drifts (its
    clock, other processes) or a group whose members compete for the
    caches shifts a whole group. A shared call timed in every group (e.g.
    the original model) measures that shift: each call's value is scaled
    by the median of the shared call's values over the groups divided by
    its value in the call's own group, i.e. every group is brought to the
    shared call's typical value. With one group nothing changes.

    Args:
      shared_index: which shared call is the reference.

    Raises:
      InvalidArgumentError: when no shared call has that index.
    """
    if not self.shared or not 0 <= shared_index < len(self.shared[0]):
      raise errors.InvalidArgumentError(
          'Invalid value for argument `shared_index`. Expected the index '
          'of a shared call (0 to %d). Received: shared_index=%r' % (
              len(self.shared[0]) - 1 if self.shared else -1, shared_index))
    reference = np.array([group[shared_index].value_ns
                          for group in self.shared], np.float64)
    typical = float(np.median(reference))
    return np.array([m.value_ns * typical / reference[m.group]
                     for m in self.measurements], np.float64)

  def flagged(self) -> List[str]:
    """Labels of the calls still unstable after `max_attempts`."""
    return [m.label for m in self.measurements if m.unstable]

  def to_dict(self) -> Dict:
    """A JSON-ready form (sorted-keys friendly)."""
    return {'measurements': [m._asdict() for m in self.measurements],
            'shared': [[m._asdict() for m in group] for group in self.shared],
            'groups': self.groups, 'budget': self.budget,
            'budget_source': self.budget_source, 'probe': self.probe,
            'settings': self.settings, 'environment': self.environment,
            'flagged': self.flagged()}


def primitive_cache_capacity(environ: Optional[Mapping[str, str]] = None
                             ) -> int:
  """oneDNN's primitive cache capacity as the environment sets it.

  Args:
    environ: the environment (default `os.environ`).

  Returns:
    The first of `CAPACITY_VARIABLES` that is set, else 1024.

  Raises:
    InvalidArgumentError: for a value that is not an integer >= 0; names
      the variable.
  """
  environ = os.environ if environ is None else environ
  for name in CAPACITY_VARIABLES:
    if name in environ:
      value = environ[name]
      try:
        capacity = int(value)
      except ValueError:
        capacity = -1
      if capacity < 0:
        raise errors.InvalidArgumentError(
            'Invalid value for environment variable %s. Expected an integer '
            '>= 0 (oneDNN primitive cache entries). Received: %s=%r' % (
                name, name, value))
      return capacity
  return DEFAULT_PRIMITIVE_CACHE


def onednn_enabled() -> Optional[bool]:
  """Whether TensorFlow runs its oneDNN kernels (None if unknown)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return None


def default_budget() -> int:
  """Half TensorFlow's per-thread primitive cache: 512 kernel weights.

  The per-thread cache is the one that decides (a call that finds its
  primitives there never asks oneDNN's cache, whatever its capacity); half
  of it leaves room for a group's small kernels that `kernel_weight` does
  not count (reorders of activations, eltwise ops).
  """
  return TF_PRIMITIVE_CACHE // 2


def kernel_weight(ops) -> int:
  """About the oneDNN primitives a call creates: 2 per kernel op, >= 1.

  Args:
    ops: the (kind, FLOPs, bytes) of the costed ops the call runs
      (`profile_resource.op_features`), or their kinds.

  Returns:
    2 x the ops of `KERNEL_KINDS`, at least 1.
  """
  kinds = [op if isinstance(op, str) else op[0] for op in ops]
  return max(1, 2 * sum(1 for kind in kinds if kind in KERNEL_KINDS))


def group_by_budget(weights: Sequence[int], budget: int) -> List[List[int]]:
  """Consecutive groups of call indices whose weights sum to <= budget.

  A call heavier than the budget is a group alone.

  Args:
    weights: each call's kernel weight (>= 0).
    budget: the most weight per group (>= 1).

  Returns:
    The groups, in order; every index once.

  Raises:
    InvalidArgumentError: for a budget below 1 or a negative weight.
  """
  _check('budget', budget, 1)
  groups, current, total = [], [], 0
  for index, weight in enumerate(weights):
    if weight < 0:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `weights`. Expected weights >= 0. '
          'Received: weights[%d]=%r' % (index, weight))
    if current and total + weight > budget:
      groups.append(current)
      current, total = [], 0
    current.append(index)
    total += weight
  if current:
    groups.append(current)
  return groups


def summarize(times, statistic: str = 'median') -> Dict[str, float]:
  """{value, median, q1, q3, spread} of one call's times (ns).

  `spread` is the interquartile range over the median (0 for a median of
  0).
  """
  times = np.asarray(times, np.float64)
  q1, median, q3 = np.percentile(times, [25, 50, 75])
  return {'value': float(timing.STATISTICS[statistic](times)),
          'median': float(median), 'q1': float(q1), 'q3': float(q3),
          'spread': float((q3 - q1) / median) if median > 0 else 0.0}


def _rounds(calls, repeats, warmup, clock, on_round=None, consecutive=1):
  """[repeats, calls] times: `warmup` calls of each (at least one: a
  function's first run instantiates it), then interleaved rounds of
  `consecutive` calls of each in a row, the last timed."""
  for call in calls:
    for _ in range(max(1, warmup)):
      call()
  return timing.time_rounds(calls, repeats, 0, on_round=on_round,
                            clock=clock, consecutive=consecutive)


def probe_budget(calls: Sequence[Callable[[], object]],
                 weights: Sequence[int],
                 settings: Optional[MeasurementSettings] = None,
                 start: Optional[int] = None):
  """The largest budget (halving from `start`) whose group stays warm.

  For each candidate, the first group of `group_by_budget(weights,
  candidate)` is timed twice: each member alone (`warmup` calls, then
  `probe_repeats` timed calls in a row: its kernels stay cached) and the
  members interleaved (`warmup` calls each, then `probe_repeats` rounds).
  The interleaved rounds call each member once (whatever `consecutive`
  is), so each member's kernels must survive all the others' calls.
  The group is too large when the sum of its members' interleaved medians
  is above (1 + slowdown_tolerance) x the sum alone; the candidate is then
  halved. A group of one member always fits.

  Args:
    calls: functions of no argument.
    weights: their kernel weights.
    settings: the MeasurementSettings (clock, warmup, probe_repeats,
      slowdown_tolerance).
    start: the first candidate (default: the total weight, at most
      `default_budget()`: `kernel_weight` only estimates the primitives,
      and the probed group may need fewer than the heaviest group, so
      the probe does not go above half the cache).

  Returns:
    (budget, rows): rows are {budget, members, alone_ns, grouped_ns,
    ratio} per candidate tried.
  """
  s = settings or MeasurementSettings()
  timing.set_allocator(s.allocator)
  candidate = start or min(max(1, int(sum(weights))), default_budget())
  rows = []
  while True:
    group = group_by_budget(weights, candidate)[0]
    if len(group) < 2:
      return candidate, rows
    members = [calls[i] for i in group]
    alone = sum(float(np.median(_rounds([call], s.probe_repeats, s.warmup,
                                        s.clock)))
                for call in members)
    # One call of each per round (not `consecutive`): the harsher test,
    # each member's kernels must survive all the others'.
    grouped = float(np.sum(np.median(
        _rounds(members, s.probe_repeats, s.warmup, s.clock), axis=0)))
    ratio = grouped / alone if alone > 0 else 1.0
    rows.append({'budget': candidate, 'members': len(group),
                 'alone_ns': alone, 'grouped_ns': grouped, 'ratio': ratio})
    if ratio <= 1.0 + s.slowdown_tolerance or candidate == 1:
      return candidate, rows
    candidate = max(1, candidate // 2)


def _environment(budget_source: str) -> Dict:
  return {'threads': timing.thread_settings(),
          'device': timing.describe_device(),
          'tf_primitive_cache': TF_PRIMITIVE_CACHE,
          'onednn_primitive_cache': primitive_cache_capacity(),
          'onednn_enabled': onednn_enabled(),
          'allocator': timing.allocator_settings(),
          'budget_source': budget_source}


def measure(calls: Sequence[Callable[[], object]],
            labels: Optional[Sequence[str]] = None,
            weights: Optional[Sequence[int]] = None,
            settings: Optional[MeasurementSettings] = None,
            shared: Sequence[Callable[[], object]] = (),
            shared_labels: Optional[Sequence[str]] = None,
            on_round: Optional[Callable[[int], None]] = None
            ) -> MeasurementReport:
  """Times every call warm, group by group (see the module docstring).

  Args:
    calls: functions of no argument (e.g. `lambda: f(x)` of a traced
      function); eager CPU execution is synchronous, so a call's time is
      its work.
    labels: a name per call (default its index).
    weights: each call's kernel weight (`kernel_weight`; default 1 each).
    settings: how to time (default `MeasurementSettings()`).
    shared: calls timed in every group too (e.g. the call overhead).
    shared_labels: their names.
    on_round: called with a running count of timed rounds (all groups and
      attempts), e.g. to advance a progress bar.

  Returns:
    The MeasurementReport.

  Raises:
    InvalidArgumentError: for labels or weights of another length than the
      calls, or bad settings.
  """
  s = settings or MeasurementSettings()
  timing.set_allocator(s.allocator)
  labels = [str(i) for i in range(len(calls))] if labels is None else list(
      labels)
  weights = [1] * len(calls) if weights is None else [int(w) for w in
                                                       weights]
  shared_labels = (['shared %d' % i for i in range(len(shared))]
                   if shared_labels is None else list(shared_labels))
  for name, values, expected in (('labels', labels, len(calls)),
                                 ('weights', weights, len(calls)),
                                 ('shared_labels', shared_labels,
                                  len(shared))):
    if len(values) != expected:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `%s`. Expected %d entries (one per '
          'call). Received: %d' % (name, expected, len(values)))
  probe_rows = []
  if s.budget is not None:
    budget, source = s.budget, 'given'
  elif s.probe and len(calls) > 1:
    budget, probe_rows = probe_budget(calls, weights, s)
    source = 'probed'
  else:
    budget, source = default_budget(), 'default'
  groups = group_by_budget(weights, budget)
  results = [None] * len(calls)
  shared_results = []
  rounds = [0]

  def count_round(_):
    rounds[0] += 1
    if on_round is not None:
      on_round(rounds[0] - 1)

  for g, group in enumerate(groups):
    todo = list(group)
    attempt = 0
    group_shared = None
    while todo and attempt < s.max_attempts:
      attempt += 1
      members = [calls[i] for i in todo] + list(shared)
      times = _rounds(members, s.repeats, s.warmup, s.clock, count_round,
                      s.consecutive)
      again = []
      for column, index in enumerate(todo):
        stats = summarize(times[:, column], s.statistic)
        unstable = stats['spread'] > s.unstable_spread
        results[index] = Measurement(
            labels[index], stats['value'], stats['median'], stats['q1'],
            stats['q3'], stats['spread'], g, attempt, unstable,
            [float(t) for t in times[:, column]])
        if unstable:
          again.append(index)
      if group_shared is None:
        group_shared = []
        for column, label in enumerate(shared_labels):
          stats = summarize(times[:, len(todo) + column], s.statistic)
          group_shared.append(Measurement(
              label, stats['value'], stats['median'], stats['q1'],
              stats['q3'], stats['spread'], g, attempt,
              stats['spread'] > s.unstable_spread,
              [float(t) for t in times[:, len(todo) + column]]))
      todo = again
    shared_results.append(group_shared or [])
  return MeasurementReport(
      results, shared_results, groups, budget, source, probe_rows,
      dataclasses.asdict(s), _environment(source))
