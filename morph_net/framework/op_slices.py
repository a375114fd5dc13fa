"""OpSlice, Slice and OpGroup: the values the manager and the handlers share.

An op's output channels are cut into contiguous slices (`OpSlice`); slices
whose channels are kept or removed together form an `OpGroup`. These classes
are the original MorphNet's and are re-exported by `op_regularizer_manager`,
where users of the original import them from.
"""

import collections

__all__ = ['OpGroup', 'OpSlice', 'Slice']


class Slice(collections.namedtuple('Slice', ['start_index', 'size'])):
  """Channels [start_index, start_index + size) of an op."""

  def __str__(self):
    return '({}, {})'.format(self.start_index, self.size)

  __repr__ = __str__


class OpSlice(collections.namedtuple('OpSlice', ['op', 'slice'])):
  """A Slice of the output channels of a tf.Operation."""

  def __str__(self):
    return '{} {}'.format(self.op.name, self.slice)

  __repr__ = __str__


class OpGroup(object):
  """OpSlices whose channels are kept or removed together.

  Args:
    op_slice: an OpSlice to put in the group as a source (unless it is in
      `omit_source_op_slices`).
    op_groups: OpGroups whose slices and sources the new group takes, in
      order.
    omit_source_op_slices: OpSlices that are not sources of the new group.

  Attributes:
    op_slices: list of the OpSlices of the group, without duplicates.
    source_op_slices: list of the OpSlices that are regularization sources.
  """

  # Creation counter of the original MorphNet (its tests read `_index`).
  _static_index = 0

  def __init__(self, op_slice=None, op_groups=None,
               omit_source_op_slices=None):
    omit = frozenset(omit_source_op_slices or ())
    self._op_slices = []
    self._members = set()
    self._source_op_slices = []
    self._sources = set()
    if op_slice is not None:
      self._add(op_slice, op_slice not in omit)
    for op_group in op_groups or ():
      self._take(op_group, omit)
    self._index = OpGroup._static_index
    OpGroup._static_index += 1

  @property
  def op_slices(self):
    return self._op_slices

  @property
  def source_op_slices(self):
    return self._source_op_slices

  @property
  def size(self) -> int:
    """Number of channels of each slice of the group."""
    return self._op_slices[0].slice.size

  def __str__(self):
    return 'OpGroup(sources=[%s], op_slices=[%s])' % (
        ', '.join(str(s) for s in self._source_op_slices),
        ', '.join(str(s) for s in self._op_slices))

  __repr__ = __str__

  def _add(self, op_slice, is_source):
    if op_slice not in self._members:
      self._members.add(op_slice)
      self._op_slices.append(op_slice)
    if is_source and op_slice not in self._sources:
      self._sources.add(op_slice)
      self._source_op_slices.append(op_slice)

  def _take(self, op_group, omit):
    """Adds the slices and the sources (except `omit`) of another group."""
    for op_slice in op_group.op_slices:
      if op_slice not in self._members:
        self._members.add(op_slice)
        self._op_slices.append(op_slice)
    for source in op_group.source_op_slices:
      if source not in omit and source not in self._sources:
        self._sources.add(source)
        self._source_op_slices.append(source)

  def merge(self, op_groups, omit_source_op_slices=()):
    """Takes the slices and sources of `op_groups` into this group, in place.

    Costs O(slices of `op_groups`), so merging the smaller groups into the
    largest keeps the analysis near-linear. Project extension; the original
    built a new OpGroup for every merge.

    Args:
      op_groups: other OpGroups.
      omit_source_op_slices: OpSlices that stop being sources of this group.
    """
    omit = frozenset(omit_source_op_slices)
    for op_group in op_groups:
      self._take(op_group, omit)
    if omit & self._sources:
      self._sources -= omit
      self._source_op_slices[:] = [
          s for s in self._source_op_slices if s not in omit]
