"""Width multipliers for learned structures: the "expand" half of the cycle.

`multiply(structure, m)` scales every width by m. `expand_to_cost(model,
structure, target_cost)` finds, by bisection, the single multiplier that
brings the cost of the rebuilt structure within `tolerance` (1%) of the
target. Every layer of a channel group gets the same width (rounded up to a
multiple of `round_to`), and a vanished layer (width 0) is never turned back
on.
"""

import math
from typing import Dict, Optional, Tuple

from absl import logging

from morph_net.structure import structure_files
from morph_net.tools import keras_cost

__all__ = ['multiply', 'expand_to_cost', 'scale_width', 'structure_cost']


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
    ValueError: for a non-positive multiplier or round_to.
  """
  if multiplier <= 0:
    raise ValueError('Invalid value for argument `multiplier`. Expected a '
                     'positive number. Received: multiplier=%r' % multiplier)
  if round_to < 1:
    raise ValueError('Invalid value for argument `round_to`. Expected an '
                     'integer >= 1. Received: round_to=%r' % round_to)
  if width == 0:
    return 0
  scaled = width * multiplier
  return int(max(round_to, round_to * math.floor(scaled / round_to + 0.5)))


def multiply(structure: Dict[str, int], multiplier: float,
             round_to: int = 1) -> Dict[str, int]:
  """Returns {name: width * multiplier} (rounded; widths of 0 stay 0).

  Layers with equal widths get equal new widths, so a structure whose groups
  are consistent stays consistent.
  """
  return {name: scale_width(int(width), multiplier, round_to)
          for name, width in structure.items()}


def _expandable_groups(channels, structure):
  """Groups (lists of layer names) that the multiplier applies to."""
  output_groups = channels.output_groups()
  groups = []
  for group in channels.groups():
    named = [n for n in group if n in structure]
    if not named:
      continue
    gid = channels.group_of(group[0])
    if gid in output_groups:
      logging.info('Not scaling %s: it feeds a model output.', group)
      continue
    if channels.frozen_reasons(group[0]):
      logging.info('Not scaling %s: %s.', group,
                   channels.frozen_reasons(group[0])[0])
      continue
    groups.append(group)
  return groups


def expand_to_cost(model, structure: Dict[str, int], target_cost: float,
                   regularizer_class=None, round_to: int = 1,
                   tolerance: float = 0.01, input_shape=None,
                   max_iterations: int = 60
                   ) -> Tuple[Dict[str, int], float, float]:
  """Finds one multiplier m bringing the structure's cost to `target_cost`.

  Args:
    model: the built Keras model the structure belongs to.
    structure: {layer name: width}; the layers it names (whole channel
      groups) are scaled, the others keep their original widths.
    target_cost: the cost to reach, in the regularizer's unit.
    regularizer_class: a network regularizer class whose resource function
      measures the cost (default GammaFlopsRegularizer: FLOPs).
    round_to: round every width to a multiple of this.
    tolerance: relative distance to the target that ends the search.
    input_shape: optional full input shape if the model's is not static.
    max_iterations: bisection steps.

  Returns:
    (new structure, multiplier, cost of the new structure).

  Raises:
    ValueError: if target_cost is not positive, or the structure is not
      consistent within its groups.
  """
  if not target_cost > 0:
    raise ValueError('Invalid value for argument `target_cost`. Expected a '
                     'positive number. Received: target_cost=%r' % target_cost)
  coster = keras_cost.StructureCost(model, regularizer_class, input_shape)
  channels = coster.channels
  base = dict(structure)
  coster.cost(base)  # Validates names and group consistency.
  groups = _expandable_groups(channels, base)

  def scaled(m):
    new = dict(base)
    for group in groups:
      width = base.get(group[0], channels.original_width(group[0]))
      new_width = scale_width(width, m, round_to)
      for name in group:
        new[name] = new_width
    return new

  def cost_at(m):
    return coster.cost(scaled(m))

  lo, hi = 0.0, 1.0
  while cost_at(hi) < target_cost:
    lo, hi = hi, hi * 2.0
    if hi > 1024:
      raise ValueError('Cannot reach target_cost=%g: the cost at multiplier '
                       '1024 is %g.' % (target_cost, cost_at(hi)))
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
  if abs(best_cost - target_cost) > tolerance * target_cost:
    logging.warning('Closest cost %g is %.2f%% away from the target %g '
                    '(width rounding is too coarse).', best_cost,
                    100.0 * abs(best_cost / target_cost - 1), target_cost)
  return scaled(best_m), best_m, best_cost


def structure_cost(model, structure, regularizer_class=None,
                   input_shape=None) -> float:
  """The cost of `model` rebuilt with `structure` (without rebuilding it)."""
  return keras_cost.StructureCost(model, regularizer_class,
                                  input_shape).cost(structure)


def expand_file(model, structure_path: str, output_path: str,
                multiplier: Optional[float] = None,
                target_cost: Optional[float] = None, regularizer_class=None,
                round_to: int = 1, print_fn=print) -> Dict[str, int]:
  """Reads a structure, scales it, writes it; prints costs before/after.

  Exactly one of `multiplier` and `target_cost` is given; target_cost may be
  the string 'original' for the cost of `model` itself.
  """
  if (multiplier is None) == (target_cost is None):
    raise ValueError('Pass exactly one of `multiplier` and `target_cost`. '
                     'Received: multiplier=%r, target_cost=%r' %
                     (multiplier, target_cost))
  structure = structure_files.read_structure(structure_path)
  coster = keras_cost.StructureCost(model, regularizer_class)
  before = coster.cost(structure)
  if multiplier is not None:
    new = multiply(structure, multiplier, round_to)
    m = multiplier
  else:
    if target_cost == 'original':
      target_cost = coster.cost({})
    new, m, _ = expand_to_cost(model, structure, float(target_cost),
                               regularizer_class, round_to)
  after = coster.cost(new)
  print_fn('cost before: %.6g  after: %.6g  (multiplier %.4f%s)' % (
      before, after, m, '' if target_cost is None else
      ', target %.6g' % float(target_cost)))
  structure_files.write_structure(new, output_path)
  return new
