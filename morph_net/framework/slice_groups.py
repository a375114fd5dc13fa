"""SliceGroupStore: the op slices and groups of an analysis.

This is the half of the original's `OpRegularizerManager` API that op handlers
call to cut ops into slices and to group slices: `get_op_slices`,
`get_op_group`, `create_op_group_for_op_slice`, `group_op_slices` and
`slice_op`, with the original's private helpers of the same names. The
manager inherits it; kept apart so each module reads as one concept.

What differs from the original is cost, not results: merging groups moves
the smaller groups into the largest (`OpGroup.merge`), grouping slices that
already share a group changes nothing, and slicing does not re-sum prefixes.
Every change bumps `_version`, which the manager watches to tell a queue
that makes progress from one that cycles idle.
"""

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.framework import op_handler_util
from morph_net.framework.op_slices import OpGroup
from morph_net.framework.op_slices import OpSlice
from morph_net.framework.op_slices import Slice

__all__ = ['SliceGroupStore']


class SliceGroupStore(object):
  """Op slices and the groups they belong to.

  Subclasses provide `is_source_op(op)` (whether a slice that gets a group of
  its own is a source).
  """

  def __init__(self):
    self._op_slice_dict = {}  # tf.Operation -> list of OpSlice.
    self._op_group_dict = {}  # OpSlice -> OpGroup.
    self._version = 0  # Bumped by every change of slices or groups.

  def is_source_op(self, op):
    raise NotImplementedError('Subclasses say which ops are sources.')

  def create_op_group_for_op_slice(self, op_slice, is_source=True):
    """Puts `op_slice` in a new OpGroup of its own and returns the group.

    Args:
      op_slice: an OpSlice.
      is_source: whether the slice is a regularization source.

    Returns:
      The new OpGroup.
    """
    group = OpGroup(op_slice,
                    omit_source_op_slices=[] if is_source else [op_slice])
    self._op_group_dict[op_slice] = group
    self._version += 1
    return group

  def group_op_slices(self, op_slices, omit_source_op_slices=None):
    """Puts `op_slices`, and everything grouped with them, in one group.

    Slices without a group first get one of their own (a source if their op
    is a source). The smaller groups are merged into the largest.

    Args:
      op_slices: list of OpSlice.
      omit_source_op_slices: OpSlices that are not sources of the result.
    """
    group_dict = self._op_group_dict
    groups, seen = [], set()
    for op_slice in op_slices:
      group = group_dict.get(op_slice)
      if group is not None and id(group) not in seen:
        seen.add(id(group))
        groups.append(group)
    for op_slice in op_slices:
      if op_slice not in group_dict:
        groups.append(self.create_op_group_for_op_slice(
            op_slice, is_source=self.is_source_op(op_slice.op)))
    omit = omit_source_op_slices or ()
    if not groups or (len(groups) == 1 and
                      not set(omit).intersection(groups[0].source_op_slices)):
      return
    target = max(groups, key=lambda g: len(g.op_slices))
    others = [g for g in groups if g is not target]
    target.merge(others, omit)
    for group in others:
      for op_slice in group.op_slices:
        group_dict[op_slice] = target
    self._version += 1

  def slice_op(self, op, sizes):
    """Cuts `op` into slices of `sizes`, and its grouped slices alike.

    The new sizes must refine the current ones ([3, 7] -> [1, 2, 3, 4] is
    allowed, [3, 7] -> [2, 8] is not). When a slice is cut, every slice in its
    group is cut the same way and the pieces are grouped index by index.

    Args:
      op: a tf.Operation.
      sizes: list of int summing to the op's channel count.

    Raises:
      UnsupportedGraphError: (a ValueError) if `sizes` does not refine the
        current slices.
    """
    old_op_slices = list(self.get_op_slices(op))
    old_sizes = [s.slice.size for s in old_op_slices]
    if old_sizes == list(sizes):
      return
    try:
      aligned = op_handler_util.get_aligned_sizes([old_sizes, sizes])
    except ValueError as e:
      raise errors.UnsupportedGraphError(
          'Error with op: %s: %s' % (op.name, e.args[0])) from e
    if list(sizes) != aligned:
      raise errors.UnsupportedGraphError(
          'Cannot slice op %s from sizes %s to %s: new slices must not cross '
          'the old slice boundaries.' % (graph_util.describe_op(op),
                                         old_sizes, list(sizes)))
    new_index = 0
    for old_slice in old_op_slices:
      count, total = 1, sizes[new_index]
      while total < old_slice.slice.size:
        total += sizes[new_index + count]
        count += 1
      if count > 1 and old_slice in self._op_slice_dict[op]:
        group = self.get_op_group(old_slice)
        members = list(group.op_slices) if group else [old_slice]
        pieces = [[] for _ in range(count)]
        for member in members:
          self._slice_op_slice(member, sizes, new_index, count, pieces)
        if group:
          for piece in pieces:
            self.group_op_slices(piece)
      new_index += count

  def get_op_slices(self, op):
    """Returns the OpSlices of `op`, creating one whole slice the first time.

    Args:
      op: a tf.Operation.

    Returns:
      The list of OpSlice that make up the op's channels (empty for ops
      without channels).
    """
    op_slices = self._op_slice_dict.get(op)
    if op_slices is None:
      size = op_handler_util.get_op_size(op)
      op_slices = [OpSlice(op, Slice(0, size))] if size > 0 else []
      self._op_slice_dict[op] = op_slices
    return op_slices

  def get_op_group(self, op_slice):
    """Returns the OpGroup of `op_slice`, or None."""
    return self._op_group_dict.get(op_slice)

  def _slice_op_slice(self, op_slice, sizes, size_index, size_count,
                      new_op_slice_group):
    """Cuts one OpSlice into `sizes[size_index:size_index + size_count]`.

    Args:
      op_slice: the OpSlice to cut.
      sizes: list of int, new slice sizes (of the op being sliced).
      size_index: index in `sizes` of the first piece.
      size_count: number of pieces.
      new_op_slice_group: list of `size_count` lists; piece i is appended to
        list i, so matching pieces can be grouped afterwards.
    """
    op = op_slice.op
    op_slices = self.get_op_slices(op)
    position = op_slices.index(op_slice)
    self._op_group_dict.pop(op_slice, None)
    pieces = list(sizes[size_index:size_index + size_count])
    new_sizes = ([s.slice.size for s in op_slices[:position]] + pieces +
                 [s.slice.size for s in op_slices[position + 1:]])
    is_resliced = ([False] * position + [True] * size_count +
                   [False] * (len(op_slices) - position - 1))
    is_source = self._get_source_slices(new_sizes, op_slices)
    new_slices = self._slice_op_with_sizes(op, new_sizes, is_source,
                                           is_resliced)
    for i in range(size_count):
      new_op_slice_group[i].append(new_slices[position + i])

  def _slice_op_with_sizes(self, op, sizes, is_source, is_resliced):
    """Replaces the slices of `op` by slices of `sizes`.

    Args:
      op: a tf.Operation.
      sizes: list of int, the new slice sizes.
      is_source: list of bool, whether each new slice is a source (sources
        get a group of their own).
      is_resliced: list of bool, whether each slice is new (the others are
        the op's existing slices, kept with their groups).

    Returns:
      The new list of OpSlice of `op`.
    """
    old_slices = self.get_op_slices(op)
    new_slices, start, new_count = [], 0, 0
    for index, size in enumerate(sizes):
      if is_resliced[index]:
        new_slice = OpSlice(op, Slice(start, size))
        if is_source[index]:
          self.create_op_group_for_op_slice(new_slice)
        new_count += 1
      else:
        new_slice = old_slices[index - max(new_count - 1, 0)]
      new_slices.append(new_slice)
      start += size
    self._op_slice_dict[op] = new_slices
    self._version += 1
    return new_slices

  def _get_source_slices(self, sizes, op_slices):
    """Returns, per new size, whether the old slice it falls in is a source."""
    is_source, slice_index, end = [], 0, 0
    for size in sizes:
      op_slice = op_slices[slice_index]
      group = self.get_op_group(op_slice)
      is_source.append(group is not None and
                       op_slice in group.source_op_slices)
      end += size
      if end == op_slice.slice.start_index + op_slice.slice.size:
        slice_index += 1
    return is_source
