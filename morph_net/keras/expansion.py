"""Expanding a learned structure of a Keras model to a target cost.

Binds the model-free width multiplier (`morph_net.structure.width_multiplier`)
to a model: the channel groups of its channel model are scaled together, the
groups that cannot change (frozen, or reaching a model output) keep their
widths, and the cost is the `StructureCost` of the rebuilt model.

    cost = StructureCost(regularizer)
    expanded, multiplier, flops = expand_to_cost(cost, shrunk, cost({}))
"""

from typing import Dict, List, Optional, Tuple, Union

from absl import logging

from morph_net import errors
from morph_net.keras import structure_cost as structure_cost_lib
from morph_net.network_regularizers import latency_profile
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier
from morph_net.surgery import channel_model as channel_model_lib

__all__ = ['expandable_groups', 'expand_to_cost', 'expand_file']

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
