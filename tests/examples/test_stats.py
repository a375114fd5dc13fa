"""examples/experiment/stats.py on known numbers."""

import math

import pytest

from examples.experiment import stats

# Student's t quantiles (0.975) from the printed tables: 12.706 (1 degree of
# freedom), 2.776 (4).
_T1, _T4 = 12.706204736174694, 2.7764451051977934


def test_summary_of_five_values():
  s = stats.summary([1.0, 2.0, 3.0, 4.0, 5.0])
  assert s['n'] == 5 and s['mean'] == 3.0
  assert s['std'] == pytest.approx(math.sqrt(2.5), abs=1e-15)
  assert s['half_width'] == pytest.approx(_T4 * math.sqrt(2.5 / 5), 1e-12)
  assert s['half_width'] == pytest.approx(1.9632431614775572, abs=1e-12)
  assert s['ci_low'] == pytest.approx(3.0 - 1.9632431614775572, abs=1e-12)
  assert s['ci_high'] == pytest.approx(3.0 + 1.9632431614775572, abs=1e-12)


def test_summary_of_two_values_and_the_level():
  s = stats.summary([0.5, 1.5])
  assert (s['mean'], s['std']) == (1.0, pytest.approx(math.sqrt(0.5)))
  assert s['half_width'] == pytest.approx(_T1 * 0.5, 1e-12)
  wide = stats.summary([0.5, 1.5], confidence=0.99)
  assert wide['half_width'] == pytest.approx(63.656741162871526 * 0.5, 1e-9)


def test_summary_of_one_and_of_none():
  assert stats.summary([2.0, None]) == {
      'n': 1, 'mean': 2.0, 'std': None, 'ci_low': None, 'ci_high': None,
      'half_width': None}
  assert stats.summary([])['mean'] is None and stats.summary([])['n'] == 0


def test_paired_differences_use_the_common_seeds():
  assert stats.paired_differences({0: 0.9, 1: 0.8, 2: 0.7},
                                  {1: 0.5, 2: 0.75, 3: 0.1}) == {
                                      1: pytest.approx(0.3),
                                      2: pytest.approx(-0.05)}


def test_aggregate_pairs_by_seed_within_a_group():
  records = []
  for seed, (mine, uniform) in enumerate([(0.90, 0.88), (0.86, 0.85),
                                          (0.91, 0.87)]):
    records.append({'network': 'vgg', 'target': 0.5, 'method': 'gamma',
                    'seed': seed, 'accuracy': mine})
    records.append({'network': 'vgg', 'target': 0.5, 'method': 'uniform',
                    'seed': seed, 'accuracy': uniform})
  # Another group: its uniform must not pair with the one above.
  records.append({'network': 'vgg', 'target': 0.25, 'method': 'gamma',
                  'seed': 0, 'accuracy': 0.5})
  records.append({'network': 'vgg', 'target': 0.25, 'method': 'prune',
                  'seed': 0, 'accuracy': None})
  rows = stats.aggregate(records, ('network', 'target'), 'accuracy',
                         scale=100.0)
  assert [(r['target'], r['method']) for r in rows] == [
      (0.25, 'gamma'), (0.5, 'gamma'), (0.5, 'uniform')]
  lone, gamma, uniform = rows
  assert lone['difference'] is None and lone['value']['n'] == 1
  assert uniform['difference'] is None
  assert gamma['seeds'] == [0, 1, 2]
  assert gamma['value']['mean'] == pytest.approx(89.0)
  differences = [2.0, 1.0, 4.0]  # Points, by seed.
  assert gamma['difference']['mean'] == pytest.approx(7.0 / 3)
  assert gamma['difference']['std'] == pytest.approx(
      math.sqrt(sum((d - 7.0 / 3) ** 2 for d in differences) / 2))
  assert gamma['difference']['half_width'] == pytest.approx(
      4.302652729749462 * gamma['difference']['std'] / math.sqrt(3))
  assert gamma['difference']['seeds'] == [0, 1, 2]
