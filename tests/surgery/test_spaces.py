"""Tests for morph_net.surgery.spaces: channel groups and channel spaces."""

import numpy as np

from morph_net.surgery import spaces


def _table(*sizes):
  table = spaces.GroupTable()
  return table, [table.new(size) for size in sizes]


def test_group_table_union_sizes_and_frozen_reasons():
  table, (a, b, c) = _table(4, 4, 3)
  table.freeze(b, 'b is fixed')
  table.union(a, b)
  assert table.find(b) == table.find(a) == a
  assert table.size(b) == 4
  assert table.frozen_reasons(a) == ['b is fixed']
  assert table.frozen_reasons(c) == []
  frozen = table.new(2, 'born frozen')
  assert table.frozen_reasons(frozen) == ['born frozen']
  assert table.roots() == [a, c, frozen]


def test_indices_of_each_space_kind():
  table, (a, b) = _table(3, 2)
  kept = {a: np.array([0, 2]), b: np.array([1])}.get
  group_a, group_b = spaces.Group(a), spaces.Group(b)
  np.testing.assert_array_equal(group_a.indices(table, kept), [0, 2])
  concat = spaces.Concat((group_a, spaces.Dead(4), group_b))
  assert concat.size(table) == 3 + 4 + 2
  np.testing.assert_array_equal(concat.indices(table, kept), [0, 2, 8])
  repeat = spaces.Repeat(group_a, 2)  # Depthwise channel c * 2 + j.
  assert repeat.size(table) == 6
  np.testing.assert_array_equal(repeat.indices(table, kept), [0, 1, 4, 5])
  flat = spaces.Flattened(group_a, 2)  # Position p, channel c: p * 3 + c.
  assert flat.size(table) == 6
  np.testing.assert_array_equal(flat.indices(table, kept), [0, 2, 3, 5])
  assert concat.group_ids(table) == [a, b]
  assert spaces.Dead(4).group_ids(table) == []


def test_replace_reaches_inside_repeat_and_flatten_only():
  inner, dead = spaces.Group(0), spaces.Dead(3)
  assert spaces.Repeat(inner, 2).replace(inner, dead) == spaces.Repeat(dead, 2)
  assert spaces.Flattened(inner, 5).replace(inner, dead) == spaces.Flattened(
      dead, 5)
  concat = spaces.Concat((inner,))
  assert concat.replace(inner, dead) == concat
  assert inner.replace(inner, dead) == dead


def test_aligned_parts_pair_equal_layouts_and_refuse_others():
  table, (a, b, c, d) = _table(2, 3, 2, 3)
  left = spaces.Concat((spaces.Group(a), spaces.Group(b)))
  right = spaces.Concat((spaces.Group(c), spaces.Group(d)))
  assert left.aligned_parts(right, table) == [
      (spaces.Group(a), spaces.Group(c)), (spaces.Group(b), spaces.Group(d))]
  swapped = spaces.Concat((spaces.Group(d), spaces.Group(c)))
  assert left.aligned_parts(swapped, table) is None
  assert spaces.Repeat(spaces.Group(a), 2).aligned_parts(
      spaces.Repeat(spaces.Group(c), 3), table) is None
  assert spaces.Flattened(spaces.Group(a), 4).aligned_parts(
      spaces.Flattened(spaces.Group(c), 4), table) == [
          (spaces.Group(a), spaces.Group(c))]
  assert spaces.Group(a).aligned_parts(spaces.Group(c), table) is None
