"""Tests for morph_net.keras.structure_cost_base: the engines' shared contract.

Runs on any Keras backend (no TensorFlow needed but for the graph engine's
class, which is skipped without it).
"""

import keras
import pytest

from morph_net import errors
from morph_net.keras import layer_structure_cost
from morph_net.keras import structure_cost_base
from morph_net.surgery import channel_model
from morph_net.testing import layer_models


class _OutputWidths(structure_cost_base.StructureCostBase):
  """Costs a plan as the sum of its width-taking layers' output widths."""

  def __init__(self, model):
    self.channels = channel_model.analyze(model)
    self.planned = []

  def _plan_cost(self, plan):
    self.planned.append(plan)
    return float(sum(plan.output_width(name)
                     for name in ('stem', 'res', 'down')))


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def test_cost_plans_the_structure_and_costs_the_plan():
  coster = _OutputWidths(layer_models.residual_cnn())
  assert coster.cost({'stem': 5, 'res': 5, 'down': 2}) == 5 + 5 + 2
  assert coster({'down': 3}) == 8 + 8 + 3  # Calling it is cost().
  assert [(p.widths['stem'], p.widths['down']) for p in coster.planned] == [
      (5, 2), (8, 3)]
  plan = coster.plan({'stem': 4, 'res': 4})
  assert plan.group_width[coster.channels.group_of('stem')] == 4


def test_cost_refuses_what_rebuild_refuses_before_costing():
  coster = _OutputWidths(layer_models.residual_cnn())
  # {stem, res} is one channel group: its layers take one width.
  with pytest.raises(errors.StructureError,
                     match='Received: stem=5, res=8'):
    coster.cost({'stem': 5})
  assert not coster.planned


def test_a_subclass_must_cost_a_plan():

  class NoCost(structure_cost_base.StructureCostBase):
    pass

  with pytest.raises(TypeError, match='_plan_cost'):
    NoCost()


def test_both_engines_implement_only_the_costing():
  classes = [layer_structure_cost.LayerStructureCost]
  try:
    from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top
    classes.append(structure_cost.StructureCost)
  except ImportError:  # No TensorFlow: the layer-level engine only.
    pass
  for cls in classes:
    assert issubclass(cls, structure_cost_base.StructureCostBase)
    assert '_plan_cost' in vars(cls)
    assert not {'plan', 'cost', '__call__'} & set(vars(cls))


def test_layer_structure_cost_through_the_base():
  coster = layer_structure_cost.LayerStructureCost(
      layer_models.residual_cnn())
  # FLOPs with a = 5 and d = 2 alive: stem 3456 a + res 1152 a^2 +
  # down 288 a d + logits 8 d.
  expected = 3456 * 5 + 1152 * 25 + 288 * 10 + 8 * 2
  assert coster.cost({'stem': 5, 'res': 5, 'down': 2}) == expected
  assert coster({'stem': 5, 'res': 5, 'down': 2}) == expected
