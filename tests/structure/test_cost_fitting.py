"""Tests for morph_net.structure.cost_fitting (model-free)."""

from morph_net.structure import cost_fitting


def _cost(structure):
  # A chain a -> b -> c: products of neighbouring widths.
  return structure['a'] * structure['b'] + structure['b'] * structure['c']


_GROUPS = [['a'], ['b'], ['c']]


def test_moves_groups_into_the_tolerance():
  start = {'a': 16, 'b': 16, 'c': 16}  # Cost 512.
  fit = cost_fitting.fit_to_cost(_cost, start, _GROUPS, 640.0,
                                 shrunk={'a': 8, 'b': 8, 'c': 8},
                                 multiplier=2.0, round_to=4)
  assert fit.reason == ''
  assert fit.structure == {'a': 16, 'b': 20, 'c': 16}
  # (20, 16, 20) costs 640 too, further from the proportions 1:1:1.
  assert fit.cost == 640
  assert fit.steps == 1


def test_vanished_groups_stay_and_floors_hold():
  start = {'a': 8, 'b': 8, 'c': 0}
  fit = cost_fitting.fit_to_cost(_cost, start, _GROUPS, 10.0,
                                 shrunk={'a': 8, 'b': 8, 'c': 0},
                                 multiplier=1.0, round_to=4)
  assert fit.structure == {'a': 4, 'b': 4, 'c': 0}
  assert fit.cost == 16
  assert fit.reason == (
      'every scaled group is at its smallest width (4 channels, round_to); '
      'the layers that keep their width and the vanished ones cost the '
      'rest')


def test_expanding_never_goes_below_the_shrunk_widths():
  start = {'a': 12, 'b': 12, 'c': 12}  # Cost 288; shrunk cost 128.
  fit = cost_fitting.fit_to_cost(_cost, start, _GROUPS, 200.0,
                                 shrunk={'a': 8, 'b': 8, 'c': 8},
                                 multiplier=1.5, round_to=4)
  # Costs are multiples of 16 here: 192 is closest; (8, 12, 8) costs 192
  # too, further from the proportions.
  assert fit.structure == {'a': 12, 'b': 8, 'c': 12}
  assert fit.cost == 192
  assert fit.reason.startswith('no move of round_to=4 channel steps brings '
                               'the cost closer')
