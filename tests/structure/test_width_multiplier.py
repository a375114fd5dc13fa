"""Tests for morph_net.structure.width_multiplier (no model involved)."""

import pytest

from morph_net.structure import width_multiplier as wm


def test_scale_width_rounding_and_zero():
  assert wm.scale_width(10, 1.26) == 13
  assert wm.scale_width(10, 1.26, round_to=8) == 16
  assert wm.scale_width(1, 0.1) == 1
  assert wm.scale_width(0, 5.0) == 0
  with pytest.raises(ValueError, match='multiplier=-1'):
    wm.scale_width(3, -1)
  with pytest.raises(ValueError, match='round_to=0'):
    wm.scale_width(3, 2, round_to=0)


def test_multiply_keeps_zero_and_equal_widths():
  out = wm.multiply({'a': 6, 'b': 6, 'c': 0, 'd': 3}, 1.5, round_to=2)
  assert out == {'a': 10, 'b': 10, 'c': 0, 'd': 4}


def _flops(structure):
  """A stand-in cost: a chain a -> b -> c of 1x1 layers on 3 inputs."""
  return 3 * structure['a'] + structure['a'] * structure['b'] + (
      structure['b'] * structure['c'])


def test_scale_groups_gives_each_group_one_width():
  scaled = wm.scale_groups({'a': 4, 'b': 6, 'c': 5}, [['a', 'c']], 2.0)
  assert scaled == {'a': 8, 'b': 6, 'c': 8}


def test_expand_to_cost_with_an_injected_cost_function():
  structure = {'a': 4, 'b': 6, 'c': 2}
  target = _flops({'a': 8, 'b': 12, 'c': 2})
  new, multiplier, cost = wm.expand_to_cost(
      _flops, structure, target, groups=[['a'], ['b']], tolerance=0.0)
  assert new == {'a': 8, 'b': 12, 'c': 2}
  assert cost == target == 24 + 96 + 24
  assert 1.9 < multiplier < 2.1


def test_expand_to_cost_errors_name_the_argument():
  with pytest.raises(ValueError, match='target_cost=-1'):
    wm.expand_to_cost(_flops, {'a': 1, 'b': 1, 'c': 1}, -1)
  with pytest.raises(ValueError,
                     match=r"`groups`.*Received names not in it: \['d'\]"):
    wm.expand_to_cost(_flops, {'a': 1, 'b': 1, 'c': 1}, 10, groups=[['d']])
  with pytest.raises(ValueError,
                     match=r'Cannot reach target_cost=1e\+12: the cost at '
                     'multiplier 1024 is'):
    wm.expand_to_cost(_flops, {'a': 1, 'b': 1, 'c': 1}, 1e12)
