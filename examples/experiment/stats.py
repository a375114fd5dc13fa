"""Seed statistics of experiment tables: mean, std, t intervals, paired diffs.

Pure functions over numbers and records (dicts); nothing here trains or
reads files.

    summary(values)                 n, mean, sample std, 95% t interval
    paired_differences(a, b)        {seed: a - b} on the seeds both have
    aggregate(records, keys, ...)   one row per cell group, with the paired
                                    difference to a baseline method
"""

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

__all__ = ['summary', 'paired_differences', 'aggregate']


def summary(values: Iterable[float], confidence: float = 0.95) -> Dict:
  """n, mean, sample standard deviation and the t confidence interval.

  Args:
    values: the numbers (None entries are skipped).
    confidence: level of the interval.

  Returns:
    {'n', 'mean', 'std', 'ci_low', 'ci_high', 'half_width'}: the interval
    is mean +- t(1 - (1 - confidence) / 2, n - 1) * std / sqrt(n) (Student's
    t, scipy.stats); std and the interval are None for fewer than two
    values, every number None for none.
  """
  values = [float(v) for v in values if v is not None]
  n = len(values)
  result = {'n': n, 'mean': None, 'std': None, 'ci_low': None,
            'ci_high': None, 'half_width': None}
  if not n:
    return result
  mean = math.fsum(values) / n
  result['mean'] = mean
  if n < 2:
    return result
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / (
      math.sqrt(n))
  result.update(std=std, ci_low=mean - half, ci_high=mean + half,
                half_width=half)
  return result


def paired_differences(values: Mapping[int, float],
                       baseline: Mapping[int, float]) -> Dict[int, float]:
  """{seed: values[seed] - baseline[seed]} for the seeds both hold."""
  return {seed: values[seed] - baseline[seed] for seed in sorted(values)
          if seed in baseline and values[seed] is not None and
          baseline[seed] is not None}


def aggregate(records: Sequence[Mapping], keys: Sequence[str],
              value: str, method_key: str = 'method',
              baseline: Optional[str] = 'uniform', seed_key: str = 'seed',
              scale: float = 1.0) -> List[Dict]:
  """One row per group of records, with its paired difference to a baseline.

  Args:
    records: dicts with the `keys`, `method_key`, `seed_key` and `value`.
    keys: the fields a group shares besides the method (e.g. network,
      target, stage).
    value: the field summarised (e.g. 'accuracy').
    method_key: the field naming the method.
    baseline: the method differences are taken to, paired by seed within
      the same `keys`; None for no differences.
    seed_key: the field pairing records.
    scale: values are multiplied by this (100: fractions to points).

  Returns:
    Rows sorted by keys then method: the keys, the method, 'seeds' (sorted),
    'value' (`summary` of the values) and 'difference' (`summary` of the
    paired differences, with 'seeds'; None for the baseline itself or
    without a baseline).
  """
  groups = {}
  for record in records:
    if record.get(value) is None:
      continue
    group = tuple(record[k] for k in keys) + (record[method_key],)
    groups.setdefault(group, {})[record[seed_key]] = scale * record[value]
  rows = []
  for group in sorted(groups, key=lambda g: tuple(str(x) for x in g)):
    by_seed = groups[group]
    row = dict(zip(keys, group[:-1]))
    row[method_key] = group[-1]
    row['seeds'] = sorted(by_seed)
    row['value'] = summary(by_seed[s] for s in sorted(by_seed))
    row['difference'] = None
    base = groups.get(group[:-1] + (baseline,))
    if baseline is not None and group[-1] != baseline and base:
      differences = paired_differences(by_seed, base)
      row['difference'] = summary(differences.values())
      row['difference']['seeds'] = sorted(differences)
    rows.append(row)
  return rows
