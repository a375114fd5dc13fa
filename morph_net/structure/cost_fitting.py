"""Fitting a scaled structure's cost to a target by adjusting single groups.

One width multiplier with rounding moves the cost in coarse steps: on a
small network widths rounded to multiples of 8 can leave the cost several
percent from the target whatever the multiplier. `fit_to_cost` starts from
the multiplier's structure and moves groups by rounding steps (`round_to`
channels): all of up to 4 groups by up to 3 steps each, two of up to 16
groups by up to 2 steps, else one group by one step, per move, until the
cost is within `tolerance` of the target:

* each step takes, among the moves landing within the tolerance, the one
  that keeps the widths closest to the multiplier's proportions (the sum
  of |width / (multiplier x shrunk width) - 1| over the groups); when no
  move lands there, the move bringing the cost closest to the target;
* a group never goes below `round_to` channels, nor, when expanding (the
  target is above the shrunk structure's cost), below its shrunk width;
  vanished groups (width 0) stay 0;
* it stops when no move gets closer, and then says by how much the cost
  misses the target and why.

Pure functions over structures and an injected cost function, like
`width_multiplier`.
"""

import dataclasses
import itertools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ['FitResult', 'fit_to_cost']

Structure = Dict[str, int]
# Moves of two groups together are tried for at most this many groups
# (their number grows with its square); beyond, one group at a time.
_MAX_GROUPS_FOR_PAIRS = 16


@dataclasses.dataclass
class FitResult(object):
  """The fitted structure, its cost, and why it misses the target (if so).

  Attributes:
    structure: the structure.
    cost: its cost.
    steps: the number of single-group moves made.
    reason: '' when within the tolerance; else why no move gets closer.
  """
  structure: Structure
  cost: float
  steps: int
  reason: str = ''


def _width_of(structure, group):
  return int(structure[group[0]])


def _with_width(structure, group, width):
  new = dict(structure)
  for name in group:
    new[name] = width
  return new


def _deviation(structure, groups, ideal) -> float:
  total = 0.0
  for group, target_width in zip(groups, ideal):
    if target_width > 0:
      total += abs(_width_of(structure, group) / target_width - 1.0)
  return total


def _moves(structure, groups, floors, round_to, reach: int, together: int
           ) -> List[Tuple[Tuple[int, int], ...]]:
  """Moves ((group index, steps), ...) on up to `together` groups, each of
  up to `reach` steps up or down, that keep the floors."""
  options = []
  for i, group in enumerate(groups):
    width = _width_of(structure, group)
    if width == 0:
      continue
    steps = [k for k in range(-reach, reach + 1)
             if k and width + k * round_to >= floors[i]]
    options.append([(i, k) for k in steps])
  moves = []
  for size in range(1, min(together, len(options)) + 1):
    for chosen in itertools.combinations(options, size):
      moves.extend(itertools.product(*chosen))
  return moves


def _apply(structure, groups, move, round_to):
  new = structure
  for i, steps in move:
    new = _with_width(new, groups[i],
                      _width_of(new, groups[i]) + steps * round_to)
  return new


def _search_size(num_groups: int) -> Tuple[int, int]:
  """(steps per group, groups moved together) of one move, so that a
  step tries at most a few thousand structures."""
  if num_groups <= 4:
    return 3, num_groups
  if num_groups <= _MAX_GROUPS_FOR_PAIRS:
    return 2, 2
  return 1, 1


def fit_to_cost(cost_fn: Callable[[Structure], float], start: Structure,
                groups: Sequence[Sequence[str]], target_cost: float,
                shrunk: Structure, multiplier: float, round_to: int = 1,
                tolerance: float = 0.01, max_steps: int = 1000,
                start_cost: Optional[float] = None) -> FitResult:
  """Moves single groups of `start` by `round_to` until the cost fits.

  Args:
    cost_fn: structure -> cost.
    start: the multiplier's rounded structure.
    groups: lists of names sharing one width (the groups that may move).
    target_cost: the cost to reach.
    shrunk: the structure before scaling (proportions and floors).
    multiplier: the multiplier `start` was scaled by.
    round_to: the step, and the smallest width.
    tolerance: relative distance to the target that is good enough.
    max_steps: at most this many moves.
    start_cost: cost_fn(start) if known.

  Returns:
    A `FitResult`.
  """
  groups = [list(g) for g in groups]
  cost = cost_fn(start) if start_cost is None else start_cost
  expanding = cost_fn(shrunk) <= target_cost
  floors = []
  for group in groups:
    base = int(shrunk[group[0]])
    floor = round_to
    if expanding and base > round_to:
      floor = round_to * (base // round_to)
    floors.append(floor)
  ideal = [multiplier * int(shrunk[g[0]]) for g in groups]
  reach, together = _search_size(len(groups))
  structure, steps = dict(start), 0
  band = tolerance * target_cost
  cache = {}

  def cost_of(candidate):
    key = tuple(sorted(candidate.items()))
    if key not in cache:
      cache[key] = cost_fn(candidate)
    return cache[key]

  while abs(cost - target_cost) > band and steps < max_steps:
    scored = []
    for move in _moves(structure, groups, floors, round_to, reach,
                       together):
      candidate = _apply(structure, groups, move, round_to)
      scored.append((cost_of(candidate), candidate))
    inside = [(c, s) for c, s in scored if abs(c - target_cost) <= band]
    if inside:
      cost, structure = min(
          inside, key=lambda cs: _deviation(cs[1], groups, ideal))
      steps += 1
      break
    if not scored:
      break
    best_cost, best = min(scored, key=lambda cs: abs(cs[0] - target_cost))
    if abs(best_cost - target_cost) >= abs(cost - target_cost):
      break
    cost, structure, steps = best_cost, best, steps + 1
  reason = ''
  if abs(cost - target_cost) > band:
    reason = _why(structure, groups, floors, cost, target_cost, expanding,
                  round_to, steps >= max_steps)
  return FitResult(structure, cost, steps, reason)


def _why(structure, groups, floors, cost, target_cost, expanding, round_to,
         out_of_steps) -> str:
  if out_of_steps:
    return 'the adjustment ran out of steps'
  at_floor = all(_width_of(structure, g) <= f or _width_of(structure, g) == 0
                 for g, f in zip(groups, floors))
  if cost > target_cost and at_floor:
    return ('every scaled group is at its smallest width (%s); the layers '
            'that keep their width and the vanished ones cost the rest' % (
                'its shrunk width' if expanding else
                '%d channels, round_to' % round_to))
  if not groups:
    return 'no group can change width'
  return ('no move of round_to=%d channel steps brings the cost closer; a '
          'smaller round_to lands closer' % round_to)
