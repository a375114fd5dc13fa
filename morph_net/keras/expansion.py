"""Expanding a learned structure of a Keras model to a target cost.

Binds the model-free width multiplier (`morph_net.structure.width_multiplier`)
to a model: the channel groups of its channel model are scaled together, the
groups that cannot change (frozen, or reaching a model output) keep their
widths, and the cost is the `StructureCost` of the rebuilt model.

    cost = StructureCost(regularizer)
    expanded, multiplier, flops = expand_to_cost(cost, shrunk, cost({}))

A latency-targeted structure rounded up to its profile's multiple costs
less than the target (the profile charges the misaligned widths the
regularizer trained with extra, so the controller drove those to the
target): `widen_to_cost` widens it on the same cost, in steps of the
multiple, to the target and not above; `aligned_structure` does both for
a trained regularizer.

    structure, ns = aligned_structure(regularizer, target_ns)
"""

import math
from typing import Dict, List, Optional, Tuple, Union

from absl import logging

from morph_net import errors
from morph_net.keras import structure_cost as structure_cost_lib
from morph_net.network_regularizers import latency_profile
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier
from morph_net.surgery import channel_model as channel_model_lib

__all__ = ['expandable_groups', 'expand_to_cost', 'widen_to_cost',
           'aligned_structure', 'expand_file']

Structure = Dict[str, int]


def expandable_groups(channels: channel_model_lib.ChannelModel,
                      structure: Structure) -> List[List[str]]:
  """The channel groups a multiplier applies to.

  Args:
    channels: the channel model.
    structure: {layer name: width}.

  Returns:
    The groups (lists of width-taking layer names) with a layer named in
    `structure` whose width may change; the others are logged and skipped.
  """
  groups = []
  for group in channels.groups():
    if not any(name in structure for name in group):
      continue
    changeable, why = channels.can_change_width(group[0])
    if not changeable:
      logging.info('Not scaling %s: %s.', group, why)
      continue
    groups.append(group)
  return groups


def _structure_cost(cost, resource, input_shape):
  if isinstance(cost, structure_cost_lib.StructureCost):
    return cost
  return structure_cost_lib.StructureCost(cost, resource, input_shape)


def _round_to(coster, round_to):
  """`round_to`, or by default the latency profile's multiple (else 1)."""
  if round_to is None:
    return latency_profile.preferred_multiple_of(coster)
  return round_to


def expand_to_cost(cost, structure: Structure, target_cost: float,
                   round_to: Optional[int] = None, tolerance: float = 0.01,
                   max_iterations: int = 60, resource=None, input_shape=None,
                   adjust_groups: bool = True
                   ) -> Tuple[Structure, float, float]:
  """Brings the structure's cost to `target_cost`: one multiplier, then groups.

  Bisection finds the one width multiplier whose rounded structure costs
  closest to the target; if rounding leaves it further than `tolerance`,
  single groups move by `round_to` channels (never below their shrunk
  width when expanding; vanished groups stay 0) until it is within (see
  `morph_net.structure.cost_fitting`). When it cannot be, a warning says
  by how much and why.

  Args:
    cost: a `StructureCost` (its trace, channel model and resource are
      used), or a built Keras model (costed with `resource`).
    structure: {layer name: width}; the groups it names are scaled, the
      other layers keep their widths.
    target_cost: the cost to reach, in the resource's unit.
    round_to: round every width to a multiple of this; default the
      latency profile's `preferred_multiple` when the cost is a latency on
      an aligned profile, else 1.
    tolerance: relative distance to the target that ends the search.
    max_iterations: bisection steps.
    resource: with a model, what to cost (see
      `structure_cost.resource_function_of`; default FLOPs).
    input_shape: with a model whose input size is not static, its input
      shape without batch.
    adjust_groups: move single groups after the multiplier; False keeps
      the plain multiplier's structure.

  Returns:
    (new structure, multiplier (the bisection's), cost of the new
    structure).

  Raises:
    InvalidArgumentError: if target_cost is not positive or not reachable.
    StructureError: if the structure does not fit the model (unknown
      layers, different widths within a group ...).
  """
  coster = _structure_cost(cost, resource, input_shape)
  round_to = _round_to(coster, round_to)
  coster.cost(structure)  # Validates names and group consistency.
  channels = coster.channels
  groups = expandable_groups(channels, structure)
  base = dict(structure)
  for group in groups:
    for name in group:
      base.setdefault(name, channels.original_width(name))
  return width_multiplier.expand_to_cost(
      coster.cost, base, target_cost, groups=groups, round_to=round_to,
      tolerance=tolerance, max_iterations=max_iterations,
      adjust_groups=adjust_groups)


def _set_width(structure, names, width):
  widened = dict(structure)
  for name in names:
    widened[name] = width
  return widened


def widen_to_cost(cost, structure: Structure, target_cost: float,
                  round_to: Optional[int] = None, tolerance: float = 0.01,
                  widest: Optional[Structure] = None, max_steps: int = 1000,
                  resource=None, input_shape=None) -> Tuple[Structure, float]:
  """Rounds the widths up to a multiple, then widens them to `target_cost`.

  The widths are rounded up to multiples of `round_to` (capped at
  `widest`). While the cost is below the target by more than
  `tolerance`: first one multiplier t >= 1 on every group's width
  (rounded up to the multiple, capped), the largest whose structure costs
  at most the target (bisection); then single groups grow by `round_to`
  channels, each step the group adding the most channels per unit of
  cost among those that keep the cost at most the target. The cost never
  goes above the target; vanished groups (width 0) stay 0.

  Args:
    cost: a `StructureCost` (its trace, channel model and resource are
      used), or a built Keras model (costed with `resource`).
    structure: {layer name: width}, e.g. a regularizer's alive counts.
    target_cost: the cost to reach, in the resource's unit.
    round_to: the multiple; default the latency profile's
      `preferred_multiple` when the cost is a latency on an aligned
      profile, else 1.
    tolerance: relative distance below the target that ends the widening.
    widest: {name: the most channels it may have}; default each layer's
      width in the model.
    max_steps: the most single-group steps.
    resource: with a model, what to cost (default FLOPs).
    input_shape: with a model whose input size is not static, its input
      shape without batch.

  Returns:
    (the widened structure, its cost). When the rounded structure costs
    more than the target already, it is returned as it is, with a warning
    saying by how much.

  Raises:
    InvalidArgumentError: if target_cost is not positive.
    StructureError: if the structure does not fit the model.
  """
  if not target_cost > 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `target_cost`. Expected a positive '
        'number. Received: target_cost=%r' % (target_cost,))
  coster = _structure_cost(cost, resource, input_shape)
  round_to = _round_to(coster, round_to)
  channels = coster.channels
  if widest is None:
    widest = {name: channels.original_width(name) for name in structure}
  current = width_multiplier.round_up(structure, round_to, widest)
  current_cost = float(coster.cost(current))
  if current_cost > target_cost:
    logging.warning(
        'The structure rounded up to multiples of %d costs %g, %.2f%% above '
        'the target %g: not widened.', round_to, current_cost,
        100.0 * (current_cost / target_cost - 1.0), target_cost)
    return current, current_cost
  groups = []  # (names in the structure, width, cap)
  for group in expandable_groups(channels, current):
    names = [name for name in group if name in current]
    width = int(current[names[0]])
    cap = min(int(widest.get(name, width)) for name in names)
    if 0 < width < cap:
      groups.append((names, width, cap))

  def widened(t):
    result = dict(current)
    for names, width, cap in groups:
      new = min(cap, round_to * int(math.ceil(width * t / round_to - 1e-9)))
      for name in names:
        result[name] = max(width, new)
    return result

  def close(value):
    return value >= (1.0 - tolerance) * target_cost

  if groups and not close(current_cost):
    lo, hi = 1.0, max(cap / float(width) for _, width, cap in groups)
    top = widened(hi)
    top_cost = float(coster.cost(top))
    if top_cost <= target_cost:
      current, current_cost = top, top_cost
    else:
      for _ in range(40):
        mid = 0.5 * (lo + hi)
        mid_structure = widened(mid)
        mid_cost = float(coster.cost(mid_structure))
        if mid_cost <= target_cost:
          lo, current, current_cost = mid, mid_structure, mid_cost
          if close(mid_cost):
            break
        else:
          hi = mid
        if hi - lo < 1e-6:
          break
  steps = 0
  while not close(current_cost) and steps < max_steps:
    best = None
    for names, _, cap in groups:
      width = int(current[names[0]])
      if width >= cap:
        continue
      new = min(cap, width + round_to)
      candidate = _set_width(current, names, new)
      candidate_cost = float(coster.cost(candidate))
      if candidate_cost > target_cost:
        continue
      added = (new - width) * len(names)
      rate = added / max(candidate_cost - current_cost, 1e-12)
      if best is None or rate > best[0]:
        best = (rate, candidate, candidate_cost)
    if best is None:
      break
    _, current, current_cost = best
    steps += 1
  if not close(current_cost):
    logging.warning(
        'Widened to %g, %.2f%% below the target %g: no group can grow by '
        '%d channels without going above it.', current_cost,
        100.0 * (1.0 - current_cost / target_cost), target_cost, round_to)
  return current, current_cost


def aligned_structure(regularizer, target_cost: float,
                      round_to: Optional[int] = None,
                      tolerance: float = 0.01) -> Tuple[Structure, float]:
  """A trained regularizer's structure at its target: its alive counts
  rounded up to the multiple and widened on its own cost
  (`widen_to_cost`), never above `target_cost`.

  Args:
    regularizer: a `ModelRegularizer` (e.g. a GammaLatencyRegularizer on
      a calibrated profile).
    target_cost: the cost the structure may reach (e.g. the cost target
      it was trained to), in the regularizer's unit.
    round_to: as `ModelRegularizer.aligned_counts` (default the profile's
      preferred multiple).
    tolerance: as `widen_to_cost`.

  Returns:
    ({layer name: width}, its cost).

  Raises:
    InvalidArgumentError: if target_cost is not positive.
  """
  coster = structure_cost_lib.StructureCost(regularizer)
  vectors = regularizer.alive_vectors()
  return widen_to_cost(coster, regularizer.alive_counts(), target_cost,
                       round_to if round_to is not None else
                       latency_profile.preferred_multiple_of(regularizer),
                       tolerance,
                       widest={k: int(v.size) for k, v in vectors.items()})


def expand_file(cost, structure_path: str, output_path: str,
                multiplier: Optional[float] = None,
                target_cost: Optional[Union[float, str]] = None,
                round_to: Optional[int] = None, print_fn=print,
                resource=None
                ) -> Structure:
  """Reads a structure, scales it, writes it; prints costs before and after.

  Args:
    cost: a `StructureCost`, or a built Keras model (costed with
      `resource`).
    structure_path: the structure JSON to read.
    output_path: where to write the scaled structure (atomically).
    multiplier: scale every width by this ...
    target_cost: ... or by the one multiplier reaching this cost; the
      string 'original' means the cost of the model itself.
    round_to: round every width to a multiple of this (default: as
      `expand_to_cost`).
    print_fn: where the line with the costs goes.
    resource: with a model, what to cost (default FLOPs).

  Returns:
    The scaled structure.

  Raises:
    InvalidArgumentError: unless exactly one of `multiplier` and
      `target_cost` is given; and as `expand_to_cost`.
  """
  if (multiplier is None) == (target_cost is None):
    raise errors.InvalidArgumentError(
        'Pass exactly one of `multiplier` and `target_cost`. Received: '
        'multiplier=%r, target_cost=%r' % (multiplier, target_cost))
  coster = _structure_cost(cost, resource, None)
  round_to = _round_to(coster, round_to)
  structure = structure_files.read_structure(structure_path)
  before = coster.cost(structure)
  if multiplier is not None:
    new = width_multiplier.multiply(structure, multiplier, round_to)
    used = multiplier
  else:
    if target_cost == 'original':
      target_cost = coster.cost({})
    new, used, _ = expand_to_cost(coster, structure, float(target_cost),
                                  round_to)
  after = coster.cost(new)
  print_fn('cost before: %.6g  after: %.6g  (multiplier %.4f%s)' % (
      before, after, used, '' if target_cost is None else
      ', target %.6g' % float(target_cost)))
  structure_files.write_structure(new, output_path)
  return new
