"""The structure cost's contract, shared by both engines.

A structure cost answers "what would the model `rebuild(model, structure)`
returns cost?" without building it. Both engines answer it the same way:
the structure is validated and planned by surgery's `RebuildPlan` on the
model's channel model, and the plan is costed. Only the costing differs:

- the graph engine's `structure_cost.StructureCost` (TensorFlow) evaluates
  a resource function on the traced graph's ops at the plan's widths;
- the layer-level engine's `layer_structure_cost.LayerStructureCost` (any
  backend, no TensorFlow) evaluates the layer rules' cost hooks with the
  plan's channel groups alive.

Each implements `_plan_cost(plan)`; `plan`, `cost` and calling the object
are here. This module imports no TensorFlow.
"""

import abc
from typing import Dict

from morph_net.surgery import plan as plan_lib

__all__ = ['StructureCostBase']


class StructureCostBase(abc.ABC):
  """The cost of a Keras model rebuilt with a structure, without rebuilding.

  A subclass sets `self.channels` (the model's `ChannelModel`, the one
  `rebuild` plans with) and implements `_plan_cost`. Calling the object is
  `cost`.
  """

  channels = None  # The model's channel model, set by the subclass.

  def plan(self, structure: Dict[str, int]) -> plan_lib.RebuildPlan:
    """The rebuild plan of `structure` (validates it against the model)."""
    return plan_lib.RebuildPlan(self.channels, structure)

  def cost(self, structure: Dict[str, int]) -> float:
    """The cost of the model rebuilt with `structure`.

    Args:
      structure: {width-taking layer name: width}; missing layers keep
        their original width.

    Returns:
      The cost in the resource's unit (FLOPs, weights, activations, ns
      ...).

    Raises:
      StructureError: for a structure `rebuild` would refuse.
    """
    return self._plan_cost(self.plan(structure))

  @abc.abstractmethod
  def _plan_cost(self, plan: plan_lib.RebuildPlan) -> float:
    """The cost of the model rebuilt as `plan` says (a validated plan)."""

  __call__ = cost
