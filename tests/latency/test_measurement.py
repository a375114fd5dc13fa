"""The one timing method: groups, warm-up, spread, retries, kernel caches."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from morph_net import errors
from morph_net.latency import measurement
from morph_net.latency import timing


class FakeClock(object):
  """A clock that advances only when a fake call runs: exact timings."""

  def __init__(self):
    self.now = 0
    self.log = []

  def __call__(self):
    return self.now

  def call(self, name, durations):
    """A call that takes durations[k] ns on its k-th run (the last after)."""
    runs = [0]

    def run():
      self.log.append(name)
      self.now += durations[min(runs[0], len(durations) - 1)]
      runs[0] += 1
    return run


@pytest.fixture
def clock(monkeypatch):
  fake = FakeClock()
  monkeypatch.setitem(timing.CLOCKS, 'fake', fake)
  return fake


def test_group_by_budget_packs_consecutive_calls():
  assert measurement.group_by_budget([3, 3, 3, 5, 1, 9, 1], 6) == [
      [0, 1], [2], [3, 4], [5], [6]]
  assert measurement.group_by_budget([1] * 5, 2) == [[0, 1], [2, 3], [4]]
  assert measurement.group_by_budget([], 4) == []
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected an integer >= 1. Received: budget=0'):
    measurement.group_by_budget([1], 0)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected weights >= 0. Received: weights\[1\]=-2'):
    measurement.group_by_budget([1, -2], 4)


def test_kernel_weight_counts_two_per_kernel_op():
  ops = [('conv', 10.0, 5.0), ('batch_norm', 1.0, 1.0),
         ('activation', 0.0, 1.0), ('depthwise', 2.0, 2.0),
         ('matmul', 3.0, 3.0), ('pool', 0.0, 1.0)]
  assert measurement.kernel_weight(ops) == 8
  assert measurement.kernel_weight(['conv', 'add']) == 2
  assert measurement.kernel_weight([('add', 1.0, 1.0)]) == 1
  assert measurement.default_budget() == 512


def test_primitive_cache_capacity_reads_the_environment():
  assert measurement.primitive_cache_capacity({}) == 1024
  assert measurement.primitive_cache_capacity(
      {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '16',
       'DNNL_PRIMITIVE_CACHE_CAPACITY': '99'}) == 16
  assert measurement.primitive_cache_capacity(
      {'DNNL_PRIMITIVE_CACHE_CAPACITY': '0'}) == 0
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'environment variable ONEDNN_PRIMITIVE_CACHE_'
                     r"CAPACITY. Expected an integer >= 0 .*Received: ONEDNN_"
                     r"PRIMITIVE_CACHE_CAPACITY='many'"):
    measurement.primitive_cache_capacity(
        {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': 'many'})


def test_summarize_gives_quartiles_and_spread():
  stats = measurement.summarize([100, 200, 300, 400, 500])
  assert stats == {'value': 300.0, 'median': 300.0, 'q1': 200.0,
                   'q3': 400.0, 'spread': 200.0 / 300.0}
  assert measurement.summarize([4, 2, 8], 'min')['value'] == 2.0


@pytest.mark.parametrize('kwargs, message', [
    (dict(repeats=0), r'`repeats`. Expected an integer >= 1. Received: '
     r'repeats=0'),
    (dict(warmup=-1), r'`warmup`. Expected an integer >= 0'),
    (dict(budget=0), r'`budget`. Expected an integer >= 1'),
    (dict(max_attempts=0), r'`max_attempts`. Expected an integer >= 1'),
    (dict(consecutive=0), r'`consecutive`. Expected an integer >= 1. '
     r'Received: consecutive=0'),
    (dict(unstable_spread=-0.1), r'`unstable_spread`. Expected a number '
     r'>= 0. Received: unstable_spread=-0.1'),
    (dict(statistic='mean'), r"`statistic`. Expected one of median, min. "
     r"Received: statistic='mean'"),
    (dict(clock='gpu'), r"`clock`. Expected one of cpu, wall. Received: "
     r"clock='gpu'"),
])
def test_settings_errors_name_the_argument(kwargs, message):
  with pytest.raises(errors.InvalidArgumentError, match=message):
    measurement.MeasurementSettings(**kwargs)


def test_measure_times_each_group_warm_and_interleaved(clock):
  calls = [clock.call(name, [1000, 10]) for name in 'abcd']
  shared = [clock.call('o', [500, 1])]
  settings = measurement.MeasurementSettings(
      repeats=2, warmup=1, clock='fake', budget=4)
  report = measurement.measure(calls, list('abcd'), [2, 2, 3, 1], settings,
                               shared=shared, shared_labels=['overhead'])
  assert report.groups == [[0, 1], [2, 3]]
  assert (report.budget, report.budget_source) == (4, 'given')
  # Group 1: each member (and the shared call) warmed once, then rounds
  # calling every member twice in a row (the second timed); then group 2.
  assert ''.join(clock.log) == 'abo' + 'aabboo' * 2 + 'cdo' + 'ccddoo' * 2
  assert report.values().tolist() == [10.0, 10.0, 10.0, 10.0]
  assert [m.group for m in report.measurements] == [0, 0, 1, 1]
  assert [[m.value_ns for m in group] for group in report.shared] == [
      [1.0], [1.0]]
  assert report.flagged() == []
  assert report.environment['threads'] == timing.thread_settings()
  assert report.environment['tf_primitive_cache'] == 1024
  assert report.to_dict()['measurements'][0]['label'] == 'a'


def after_itself_call(clock, name, warm, cold):
  """A call taking `warm` ns right after a call of its own, else `cold`
  (as a model whose tensors another model's call evicted)."""
  def run():
    previous = clock.log[-1] if clock.log else None
    clock.log.append(name)
    clock.now += warm if previous == name else cold
  return run


def test_each_timed_call_follows_a_call_of_its_own(clock):
  calls = [after_itself_call(clock, 'a', 60, 70),
           after_itself_call(clock, 'b', 100, 101)]
  settings = measurement.MeasurementSettings(
      repeats=3, warmup=1, clock='fake', budget=4)
  assert settings.consecutive == 2
  report = measurement.measure(calls, ['small', 'large'], [1, 1], settings)
  assert ''.join(clock.log) == 'ab' + 'aabb' * 3
  assert report.values().tolist() == [60.0, 100.0]
  assert report.to_dict()['settings']['consecutive'] == 2
  # One call per round: each timed right after the other's.
  clock.log.clear()
  settings = measurement.MeasurementSettings(
      repeats=3, warmup=1, clock='fake', budget=4, consecutive=1)
  report = measurement.measure(calls, ['small', 'large'], [1, 1], settings)
  assert ''.join(clock.log) == 'ab' + 'ab' * 3
  assert report.values().tolist() == [70.0, 101.0]


def test_time_rounds_consecutive_calls_and_errors(clock):
  calls = [after_itself_call(clock, 'a', 5, 9),
           after_itself_call(clock, 'b', 1, 3)]
  times = timing.time_rounds(calls, 2, warmup=0, clock='fake',
                             consecutive=3)
  assert ''.join(clock.log) == 'aaabbb' * 2
  assert times.tolist() == [[5.0, 1.0], [5.0, 1.0]]
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'argument `consecutive`. Expected an int >= 1 '
                     r'\(calls of each function in a row per round\). '
                     r'Received: consecutive=0'):
    timing.time_rounds(calls, 2, clock='fake', consecutive=0)


def test_unstable_calls_are_measured_again_then_flagged(clock):
  steady = clock.call('s', [100])
  # Warm-up 100, then alternately 100 and 300 ns: IQR / median 1 > 0.1.
  jumpy = clock.call('j', [100] + [100, 300] * 50)
  settles = clock.call('t', [100, 100, 500, 100])  # Wild only at first.
  settings = measurement.MeasurementSettings(
      repeats=4, warmup=1, clock='fake', budget=10, max_attempts=3,
      consecutive=1)
  report = measurement.measure([steady, jumpy, settles], list('sjt'),
                               settings=settings)
  by_label = {m.label: m for m in report.measurements}
  assert (by_label['s'].attempts, by_label['s'].unstable) == (1, False)
  assert (by_label['t'].attempts, by_label['t'].unstable) == (2, False)
  assert (by_label['j'].attempts, by_label['j'].unstable) == (3, True)
  assert by_label['j'].spread == pytest.approx(1.0)
  assert report.flagged() == ['j']
  # Attempt 1 times all three; attempts 2 and 3 only the unstable ones.
  assert clock.log.count('s') == 1 + 4
  assert clock.log.count('t') == (1 + 4) + (1 + 4)
  assert clock.log.count('j') == 3 * (1 + 4)


def test_measure_argument_errors(clock):
  settings = measurement.MeasurementSettings(clock='fake', budget=1)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'`labels`. Expected 2 entries \(one per call\). '
                     r'Received: 1'):
    measurement.measure([clock.call('a', [1])] * 2, ['a'], settings=settings)


def _cached_calls(clock, count, capacity, hit=10, miss=1000):
  """Calls of weight 1 that run fast only while an LRU of `capacity` holds
  them: a cache of kernels, simulated."""
  cache = []

  def make(index):
    def run():
      clock.log.append(index)
      clock.now += hit if index in cache else miss
      if index in cache:
        cache.remove(index)
      cache.append(index)
      del cache[:-capacity]
    return run
  return [make(i) for i in range(count)]


def test_probe_halves_the_budget_until_a_group_stays_cached(clock):
  calls = _cached_calls(clock, 40, capacity=6)
  settings = measurement.MeasurementSettings(
      clock='fake', probe_repeats=3, warmup=1, repeats=2)
  budget, rows = measurement.probe_budget(calls, [1] * 40, settings)
  assert budget == 5
  assert [(r['budget'], r['members']) for r in rows] == [
      (40, 40), (20, 20), (10, 10), (5, 5)]
  assert [r['ratio'] for r in rows] == [100.0, 100.0, 100.0, 1.0]
  report = measurement.measure(calls, weights=[1] * 40, settings=settings)
  assert (report.budget, report.budget_source) == (5, 'probed')
  assert len(report.groups) == 8
  assert report.values().tolist() == [10.0] * 40
  # The old way, all 40 interleaved: every timed call misses the cache.
  old = timing.time_interleaved(calls, 2, warmup=1, clock='fake')
  assert old.tolist() == [1000.0] * 40


def test_without_probe_the_default_budget_is_used(clock):
  calls = [clock.call('a', [5])] * 3
  report = measurement.measure(calls, settings=measurement.MeasurementSettings(
      clock='fake', probe=False, repeats=1))
  assert (report.budget, report.budget_source) == (512, 'default')
  assert report.groups == [[0, 1, 2]]


_KERNELS_SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    from morph_net.latency import measurement
    from morph_net.latency import timing

    if not measurement.onednn_enabled():
      print('NO_ONEDNN', flush=True)
      sys.exit(0)
    timing.pin_threads(1, 1)
    original = timing.time_rounds

    def marked(calls, repeats, warmup=2, on_round=None, clock='wall',
               consecutive=1):
      for _ in range(warmup):
        for call in calls:
          call()
      print('TIMED_BEGIN', flush=True)
      times = original(calls, repeats, 0, on_round, clock, consecutive)
      print('TIMED_END', flush=True)
      return times

    timing.time_rounds = marked
    x = tf.constant(np.ones((1, 4, 4, 4), np.float32))
    calls, weights = [], []
    for v in range(60):  # 60 programs of 20 convolutions, all distinct.
      kernels = [tf.constant(np.ones((1, 1, 4, 4 + 20 * v + c), np.float32))
                 for c in range(20)]
      f = tf.function(lambda t, ks=kernels: [tf.nn.conv2d(t, k, 1, 'SAME')
                                             for k in ks])
      calls.append(lambda f=f: f(x))
      weights.append(measurement.kernel_weight(['conv'] * 20))
    print('OLD', flush=True)
    timing.time_interleaved(calls, repeats=2, warmup=1)
    print('NEW', flush=True)
    measurement.measure(calls, weights=weights,
                        settings=measurement.MeasurementSettings(
                            repeats=2, warmup=1, probe=False))
''')


def _creations_while_timing(output):
  """Primitive creations oneDNN logged inside TIMED_BEGIN/END, per part."""
  counts, part, timed = {}, None, False
  for line in output.splitlines():
    if line in ('OLD', 'NEW'):
      part = line
      counts[part] = 0
    elif line == 'TIMED_BEGIN':
      timed = True
    elif line == 'TIMED_END':
      timed = False
    elif timed and re.match(r'onednn_verbose,.*,primitive,create:', line):
      counts[part] += 1
  return counts


def test_old_interleaving_recreates_kernels_and_groups_do_not():
  # oneDNN logs every primitive it creates (ONEDNN_VERBOSE=profile_create);
  # its own cache is made tiny, so a re-created kernel is compiled again.
  # 1,200 distinct primitives interleaved overflow TensorFlow's per-thread
  # cache of 1,024: every timed round re-creates all of them. In groups of
  # the default budget (12 programs, 240 primitives) none is re-created.
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS='1',
             ONEDNN_VERBOSE='profile_create',
             ONEDNN_PRIMITIVE_CACHE_CAPACITY='8', CUDA_VISIBLE_DEVICES='',
             TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join(sys.path))
  result = subprocess.run([sys.executable, '-c', _KERNELS_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=900,
                          check=True)
  if 'NO_ONEDNN' in result.stdout:
    pytest.skip('TensorFlow runs no oneDNN kernels on this machine.')
  counts = _creations_while_timing(result.stdout)
  assert counts['OLD'] == 2 * 1200
  assert counts['NEW'] == 0


# ------------------------------------------------------------- allocator.


def test_allocator_setting_errors_name_the_argument():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"`allocator`. Expected one of default, steady. "
                     r"Received: allocator='tcmalloc'"):
    measurement.MeasurementSettings(allocator='tcmalloc')
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"`allocator`. Expected one of steady, default. "
                     r"Received: allocator='fast'"):
    timing.set_allocator('fast')


_PAGE_FAULTS = textwrap.dedent('''
    import json, resource, sys
    import numpy as np
    from morph_net.latency import timing

    settings = timing.set_allocator(sys.argv[1])

    def faults_of_a_call():
      """Page faults of filling and freeing a 48 MB tensor (hundreds if
      its pages are new, huge pages or not)."""
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      block = np.ones(12 * 2 ** 20, np.float32)
      del block
      return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults = [faults_of_a_call() for _ in range(4)]
    print(json.dumps([faults, settings]))
''')


@pytest.mark.parametrize('mode', ['steady', 'default'])
def test_steady_allocator_keeps_a_tensors_pages_from_call_to_call(mode):
  """With glibc's defaults a 48 MB tensor gets new pages on every call;
  once steady, the pages of the first call are reused."""
  import ctypes  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  if not hasattr(ctypes.CDLL(None), 'gnu_get_libc_version'):
    pytest.skip('glibc only')
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = {k: v for k, v in os.environ.items() if not k.startswith(
      ('MALLOC_', 'GLIBC_TUNABLES', 'LD_PRELOAD'))}
  out = subprocess.run(
      [sys.executable, '-c', _PAGE_FAULTS, mode], check=True,
      capture_output=True, text=True, env=dict(env, PYTHONPATH=root))
  faults, settings = json.loads(out.stdout.strip().splitlines()[-1])
  assert faults[0] > 100  # The first call always maps its pages.
  if mode == 'steady':
    assert max(faults[1:]) < 10
    assert settings['mode'] == 'steady'
    assert settings['library'].startswith('glibc ')
    assert settings['mallopt'] == {'M_MMAP_MAX': 0,
                                   'M_TRIM_THRESHOLD': 2 ** 31 - 1}
  else:
    assert min(faults[1:]) > 100
    assert settings == {'mode': 'default', 'library': None, 'mallopt': {}}


@pytest.fixture
def fresh_allocator(monkeypatch):
  monkeypatch.setattr(timing, '_ALLOCATOR',
                      {'mode': 'default', 'library': None, 'mallopt': {}})


def test_steady_allocator_warns_where_mallopt_cannot_reach(
    fresh_allocator, monkeypatch, caplog):
  del fresh_allocator
  monkeypatch.setattr(timing, '_glibc', lambda: None)
  with caplog.at_level('WARNING'):
    settings = timing.set_allocator('steady')
  assert settings['mode'] == 'unchanged'
  assert ('allocator=steady: the C library is not glibc, so mallopt does '
          'not set how tensors are allocated') in caplog.text


def test_steady_allocator_warns_under_a_preloaded_allocator(
    fresh_allocator, monkeypatch, caplog):
  del fresh_allocator
  monkeypatch.setenv('LD_PRELOAD', '/usr/lib/libtcmalloc.so.4')
  with caplog.at_level('WARNING'):
    settings = timing.set_allocator('steady')
  assert settings == {'mode': 'unchanged',
                      'library': '/usr/lib/libtcmalloc.so.4', 'mallopt': {}}
  assert 'LD_PRELOAD=/usr/lib/libtcmalloc.so.4, so mallopt' in caplog.text


def test_steady_allocator_warns_when_mallopt_fails(
    fresh_allocator, monkeypatch, caplog):
  del fresh_allocator

  class Refusing(object):

    def mallopt(self, parameter, value):
      del parameter, value
      return 0

  monkeypatch.setattr(timing, '_glibc', lambda: (Refusing(), 'glibc 9.99'))
  monkeypatch.delenv('LD_PRELOAD', raising=False)
  with caplog.at_level('WARNING'):
    settings = timing.set_allocator('steady')
  assert settings['mode'] == 'unchanged'
  assert ('mallopt(M_MMAP_MAX, 0) failed in glibc 9.99, so timings depend '
          'on what the process ran before') in caplog.text


def test_measure_sets_the_allocator_and_reports_it(fresh_allocator,
                                                   monkeypatch, clock):
  del fresh_allocator
  calls = []
  monkeypatch.setattr(timing, 'set_allocator', lambda mode: calls.append(
      mode))
  report = measurement.measure(
      [clock.call('a', [10])], ['a'], None,
      measurement.MeasurementSettings(repeats=1, clock='fake', budget=4,
                                      allocator='default'))
  assert calls == ['default']
  assert report.environment['allocator'] == {
      'mode': 'default', 'library': None, 'mallopt': {}}


def test_drift_corrected_brings_every_group_to_the_anchors_median(clock):
  # Group 1 runs 10% slow: the anchor (shared) measures 110 there and 100
  # in group 2; its median over the groups is 105.
  calls = [clock.call('a', [110]), clock.call('b', [55]),
           clock.call('c', [200]), clock.call('d', [40])]
  anchors = iter([110] * 4 + [100] * 4)
  shared = [lambda: setattr(clock, 'now', clock.now + next(anchors))]
  report = measurement.measure(
      calls, list('abcd'), [2, 2, 2, 2],
      measurement.MeasurementSettings(repeats=3, warmup=1, clock='fake',
                                      budget=4, consecutive=1),
      shared=shared, shared_labels=['original'])
  assert report.groups == [[0, 1], [2, 3]]
  assert [[m.value_ns for m in g] for g in report.shared] == [[110.0],
                                                              [100.0]]
  assert report.values().tolist() == [110.0, 55.0, 200.0, 40.0]
  assert report.drift_corrected(0).tolist() == [105.0, 52.5, 210.0, 42.0]
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'`shared_index`. Expected the index of a shared '
                     r'call \(0 to 0\). Received: shared_index=1'):
    report.drift_corrected(1)


def test_model_call_runs_the_model_as_one_concrete_function():
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  traces = []

  class Counting(keras.layers.Layer):

    def call(self, x):
      traces.append(1)  # Runs once per trace, not per call.
      return x * 2.0

  a, b = keras.Input((3,)), keras.Input((3,))
  model = keras.Model([a, b], Counting()(a) + b)
  xs = [np.arange(6, dtype=np.float32).reshape(2, 3),
        np.ones((2, 3), np.float32)]
  del traces[:]  # Building the functional model called the layer once.
  call = timing.model_call(model, xs)
  assert len(traces) == 1
  for _ in range(3):
    out = call()
  assert len(traces) == 1
  np.testing.assert_array_equal(np.asarray(out), xs[0] * 2.0 + xs[1])
  single = keras.Sequential([keras.Input((3,)), Counting()])
  np.testing.assert_array_equal(
      np.asarray(timing.model_call(single, xs[0])()), xs[0] * 2.0)
