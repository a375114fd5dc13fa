"""Width multipliers for structures: the "expand" half of the MorphNet cycle.

Pure functions over a structure ({name: width}) and, for `expand_to_cost`,
an injected cost function; nothing here knows a model. `multiply` scales
every width by one multiplier; `expand_to_cost` finds by bisection the one
multiplier whose scaled structure costs `target_cost` within `tolerance`,
and when rounding leaves it further away, moves single groups by one
rounding step until it is within (`cost_fitting`). Widths are rounded to
multiples of `round_to`, every name of a group gets the same width, and a
width of 0 (a vanished layer) stays 0.

The Keras bridge (`morph_net.keras.expansion`) binds these to a model: its
channel groups and the cost of the rebuilt model.
"""

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging

from morph_net import errors
from morph_net.structure import cost_fitting

__all__ = ['scale_width', 'multiply', 'round_up', 'scale_groups',
           'expand_to_cost']

Structure = Dict[str, int]


def scale_width(width: int, multiplier: float, round_to: int = 1) -> int:
  """Scaled width, rounded to a multiple of `round_to`; 0 stays 0, else >= 1.

  Args:
    width: the original width.
    multiplier: a positive factor.
    round_to: the width is rounded to the nearest multiple of this (and at
      least `round_to`).

  Returns:
    The new width.

  Raises:
    InvalidArgumentError: for a non-positive multiplier or round_to.
  """
  if multiplier <= 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `multiplier`. Expected a positive '
        'number. Received: multiplier=%r' % multiplier)
  if round_to < 1:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `round_to`. Expected an integer >= 1. '
        'Received: round_to=%r' % round_to)
  if width == 0:
    return 0
  scaled = width * multiplier
  return int(max(round_to, round_to * math.floor(scaled / round_to + 0.5)))


def multiply(structure: Structure, multiplier: float,
             round_to: int = 1) -> Structure:
  """Returns {name: width * multiplier} (rounded; widths of 0 stay 0).

  Names with equal widths get equal new widths, so a structure whose groups
  are consistent stays consistent.
  """
  return {name: scale_width(int(width), multiplier, round_to)
          for name, width in structure.items()}


def round_up(structure: Structure, round_to: int,
             widest: Optional[Dict[str, int]] = None) -> Structure:
  """Every width rounded up to a multiple of `round_to`, capped at `widest`.

  For widths a device runs in blocks (a latency profile's
  `preferred_multiple`): a width costs as much as the next multiple, so
  rounding up adds channels at no latency. 0 stays 0.

  Args:
    structure: {name: width}.
    round_to: the multiple (>= 1).
    widest: {name: the most channels the name may have} (its original
      width); names not in it are not capped.

  Returns:
    The rounded structure.

  Raises:
    InvalidArgumentError: for round_to below 1.
  """
  if isinstance(round_to, bool) or not isinstance(round_to, int) or (
      round_to < 1):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `round_to`. Expected an integer >= 1. '
        'Received: round_to=%r' % (round_to,))
  widest = widest or {}
  rounded = {}
  for name, width in structure.items():
    width = int(width)
    up = round_to * int(math.ceil(width / round_to)) if width else 0
    rounded[name] = min(up, widest[name]) if name in widest else up
  return rounded


def scale_groups(structure: Structure, groups: Sequence[Sequence[str]],
                 multiplier: float, round_to: int = 1) -> Structure:
  """Scales each group to one width: its first name's width x multiplier.

  Args:
    structure: {name: width}; every name of `groups` must be in it.
    groups: lists of names that share one width.
    multiplier: a positive factor.
    round_to: widths are rounded to multiples of this.

  Returns:
    A new structure; names in no group keep their widths.
  """
  scaled = dict(structure)
  for group in groups:
    width = scale_width(int(structure[group[0]]), multiplier, round_to)
    for name in group:
      scaled[name] = width
  return scaled


def _check_groups(structure, groups) -> List[List[str]]:
  if groups is None:
    return [[name] for name in structure]
  groups = [list(group) for group in groups]
  missing = sorted(set(n for g in groups for n in g) - set(structure))
  if missing or not all(groups):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `groups`. Expected non-empty lists of '
        'names of the structure. Received names not in it: %s' % missing)
  return groups


def expand_to_cost(cost_fn: Callable[[Structure], float],
                   structure: Structure, target_cost: float,
                   groups: Optional[Sequence[Sequence[str]]] = None,
                   round_to: int = 1, tolerance: float = 0.01,
                   max_iterations: int = 60, adjust_groups: bool = True
                   ) -> Tuple[Structure, float, float]:
  """Finds one multiplier m whose scaled structure costs `target_cost`.

  The cost must grow with the multiplier. The search doubles m from 1 until
  the cost reaches the target, then bisects until the cost is within
  `tolerance` of it (or the interval is below 1e-6). If rounding leaves the
  closest structure further than `tolerance` from the target, single
  groups move by `round_to` channels until it is within
  (`cost_fitting.fit_to_cost`; `adjust_groups=False` keeps the plain
  multiplier's structure).

  Args:
    cost_fn: structure -> cost (for example FLOPs of the rebuilt model).
    structure: {name: width}, the widths to scale.
    target_cost: the cost to reach, in cost_fn's unit.
    groups: lists of names scaled together to one width (default: each
      name alone); names in no group keep their widths.
    round_to: round every width to a multiple of this.
    tolerance: relative distance to the target that ends the search.
    max_iterations: bisection steps.
    adjust_groups: move single groups after the multiplier (see above).

  Returns:
    (structure, multiplier, its cost); the multiplier is the bisection's,
    before any group moved. When the cost cannot come within `tolerance`,
    the closest structure found, with a warning saying by how much it
    misses the target and why.

  Raises:
    InvalidArgumentError: for a non-positive target, unknown group names, or
      a target not reached at multiplier 1024.
  """
  if not target_cost > 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `target_cost`. Expected a positive '
        'number. Received: target_cost=%r' % target_cost)
  groups = _check_groups(structure, groups)

  def cost_at(m):
    return cost_fn(scale_groups(structure, groups, m, round_to))

  lo, hi = 0.0, 1.0
  while cost_at(hi) < target_cost:
    lo, hi = hi, hi * 2.0
    if hi > 1024:
      raise errors.InvalidArgumentError(
          'Cannot reach target_cost=%g: the cost at multiplier 1024 is %g.' %
          (target_cost, cost_at(hi)))
  best_m, best_cost = hi, cost_at(hi)
  for _ in range(max_iterations):
    mid = 0.5 * (lo + hi)
    mid_cost = cost_at(mid)
    if abs(mid_cost - target_cost) < abs(best_cost - target_cost):
      best_m, best_cost = mid, mid_cost
    if abs(best_cost - target_cost) <= tolerance * target_cost:
      break
    if mid_cost < target_cost:
      lo = mid
    else:
      hi = mid
    if hi - lo < 1e-6:
      break
  best = scale_groups(structure, groups, best_m, round_to)
  if abs(best_cost - target_cost) <= tolerance * target_cost:
    return best, best_m, best_cost
  reason = ('the multiplier is at its smallest and the widths at their '
            'minimum' if best_m < 1e-5 else 'width rounding is too coarse')
  if adjust_groups:
    fit = cost_fitting.fit_to_cost(
        cost_fn, best, groups, target_cost, structure, best_m, round_to,
        tolerance, start_cost=best_cost)
    best, best_cost, reason = fit.structure, fit.cost, fit.reason
    if fit.steps:
      logging.info('Moved %d width steps of %d channels after multiplier '
                   '%.4f: cost %g for the target %g.', fit.steps, round_to,
                   best_m, best_cost, target_cost)
  if reason:
    logging.warning(
        'Cannot bring the cost within %g%% of the target %g: the closest is '
        '%g, %.2f%% %s it, because %s.', 100.0 * tolerance, target_cost,
        best_cost, 100.0 * abs(best_cost / target_cost - 1),
        'above' if best_cost > target_cost else 'below', reason)
  return best, best_m, best_cost
