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
