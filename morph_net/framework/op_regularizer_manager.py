"""OpRegularizerManager: groups channels of a graph and assigns regularizers.

The manager walks the graph backwards from the output boundary to the input
boundary, asks the op handler of every op it meets which of the op's output
channels are the same channels as those of its inputs, and turns those
declarations into groups of op slices. Each group with source ops gets one
regularizer (the grouping regularizer combines several sources).

Grouping is a union-find over op slices. A declaration says "channels
[a, a+n) of op X are channels [b, b+n) of op Y". Slices are refined until every
declaration maps whole slices onto whole slices, then matching slices are
united. Both steps are linear in the number of declarations and slice
boundaries, and neither can loop on graph cycles (tf.while_loop), because ops
are visited once.
"""

import bisect
import collections
import re
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import constant_op_regularizer
from morph_net.framework import grouping_regularizers
from morph_net.framework import op_handler_util


class Slice(collections.namedtuple('Slice', ['start_index', 'size'])):
  """A contiguous range of channels: [start_index, start_index + size)."""

  def __str__(self):
    return '(%d, %d)' % (self.start_index, self.size)


class OpSlice(collections.namedtuple('OpSlice', ['op', 'slice'])):
  """A slice of the output channels of an op."""

  def __str__(self):
    return '%s %s' % (self.op.name, self.slice)


class OpGroup(object):
  """Op slices whose channels are kept or removed together.

  Attributes:
    op_slices: all OpSlice in the group, in graph order.
    source_op_slices: the OpSlice of source ops in the group.
  """

  def __init__(self, op_slices, source_op_slices):
    self.op_slices = list(op_slices)
    self.source_op_slices = list(source_op_slices)

  @property
  def size(self) -> int:
    return self.op_slices[0].slice.size

  def __str__(self):
    return 'OpGroup(size=%d, sources=[%s], ops=[%s])' % (
        self.size, ', '.join(s.op.name for s in self.source_op_slices),
        ', '.join(str(s) for s in self.op_slices))

  __repr__ = __str__


class _UnionFind(object):
  """Union-find with path halving over hashable keys."""

  def __init__(self):
    self._parent = {}

  def add(self, key):
    self._parent.setdefault(key, key)

  def find(self, key):
    parent = self._parent
    while parent[key] != key:
      parent[key] = parent[parent[key]]
      key = parent[key]
    return key

  def union(self, a, b):
    root_a, root_b = self.find(a), self.find(b)
    if root_a != root_b:
      self._parent[root_b] = root_a


def _validate_boundary(boundary, argument_name) -> List[tf.Operation]:
  """Checks that a boundary is a list of tf.Operation; returns it as a list."""
  if boundary is None:
    return []
  if isinstance(boundary, tf.Operation):
    boundary = [boundary]
  result = []
  for item in boundary:
    if isinstance(item, tf.Operation):
      result.append(item)
      continue
    if isinstance(item, tf.Tensor):
      try:
        fix = "pass its op instead: `tensor.op` (op '%s')" % item.op.name
      except AttributeError:
        fix = ('eager tensors have no graph; build the network in a graph '
               '(tf.compat.v1 graph mode or a traced tf.function)')
      raise errors.InvalidArgumentError(
          'Invalid value for argument `%s`. Expected a list of tf.Operation, '
          'received a tf.Tensor; %s.' % (argument_name, fix))
    raise errors.InvalidArgumentError(
        'Invalid value for argument `%s`. Expected a list of tf.Operation of '
        'a graph (a TF1 graph or a traced tf.function), received: %r (%s). '
        'For Keras models use morph_net.keras, which traces the model.' %
        (argument_name, item, type(item).__name__))
  return result


class OpRegularizerManager(object):
  """Assigns channel groups and regularizers to the ops of a network.

  Args:
    output_boundary: list of tf.Operation where the backward walk starts.
    op_handler_dict: mapping from op type to OpHandler; unknown types must be
      answered by the mapping itself (see `op_handlers.OpHandlerDict`).
    create_grouping_regularizer: callable taking a list of OpRegularizer and
      returning one; combines the sources of a group (max by default).
    force_group: list of regexes; the ops matching each regex are grouped.
    regularizer_blacklist: list of regexes; groups with a matching op get no
      regularizer.
    input_boundary: list of tf.Operation where the walk stops (not included).
    iteration_limit: bound on slice-refinement steps (a safety net).

  Raises:
    InvalidArgumentError: for bad boundaries or regexes that match nothing.
    UnsupportedGraphError: when a source op has an unknown channel count or a
      forced group mixes channel counts.
  """

  def __init__(self,
               output_boundary: Sequence[tf.Operation],
               op_handler_dict,
               create_grouping_regularizer: Optional[Callable] = None,
               force_group: Optional[Sequence[str]] = None,
               regularizer_blacklist: Optional[Sequence[str]] = None,
               input_boundary: Optional[Sequence[tf.Operation]] = None,
               iteration_limit: int = 10_000_000):
    output_boundary = _validate_boundary(output_boundary, 'output_boundary')
    input_boundary = _validate_boundary(input_boundary, 'input_boundary')
    if not output_boundary:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `output_boundary`. Expected a non-empty '
          'list of tf.Operation (for example `[logits.op]`).')
    self._graph = output_boundary[0].graph
    self._op_handler_dict = op_handler_dict
    self._create_grouping_regularizer = (
        create_grouping_regularizer or
        grouping_regularizers.MaxGroupingRegularizer)
    self._iteration_limit = iteration_limit

    self._ops = self._collect_ops(output_boundary, input_boundary)
    self._op_set = frozenset(self._ops)
    self._num_channels = {
        op: self._handler(op).get_num_channels(op) for op in self._ops}
    self._source_ops = [op for op in self._ops if self._handler(op).is_source(op)]
    self._check_source_channels()

    # op -> list of (start, size, other_op, other_start).
    self._edges = collections.defaultdict(list)
    for op in self._ops:
      self._handler(op).assign_grouping(op, self)
    self._apply_force_group(force_group or [])

    self._op_slice_dict = self._refine_slices()
    self._op_group_dict = self._build_groups()
    self._blacklist = self._compile_blacklist(regularizer_blacklist or [])
    self._op_regularizer_dict = {}
    self._regularizer_cache = {}
    with self._graph.as_default(), tf.name_scope('morph_net'):
      self._create_regularizers()

  # ---------------------------------------------------------------------------
  # Public API.

  @property
  def ops(self) -> List[tf.Operation]:
    """All ops between the boundaries, in graph order."""
    return list(self._ops)

  @property
  def source_ops(self) -> List[tf.Operation]:
    """Ops whose handler created a regularizer source."""
    return list(self._source_ops)

  @property
  def op_groups(self) -> List[OpGroup]:
    """The distinct OpGroups, in order of their first op slice."""
    seen, groups = set(), []
    for op in self._ops:
      for op_slice in self._op_slice_dict.get(op, ()):
        group = self._op_group_dict[op_slice]
        if id(group) not in seen:
          seen.add(id(group))
          groups.append(group)
    return groups

  @property
  def graph(self) -> tf.Graph:
    return self._graph

  def get_op_slices(self, op: tf.Operation) -> List[OpSlice]:
    """Returns the OpSlices of an op (empty if unknown or not analysed)."""
    return list(self._op_slice_dict.get(op, ()))

  def get_op_group(self, op_slice: OpSlice) -> Optional[OpGroup]:
    """Returns the OpGroup of an OpSlice."""
    return self._op_group_dict.get(op_slice)

  def is_source_op(self, op: tf.Operation) -> bool:
    return op in self._op_set and self._handler(op).is_source(op)

  def is_passthrough(self, op: tf.Operation) -> bool:
    return op in self._op_set and self._handler(op).is_passthrough

  def get_num_channels(self, op: tf.Operation) -> Optional[int]:
    return self._num_channels.get(op)

  def get_regularizer(self, op: tf.Operation):
    """Returns the OpRegularizer of an op's output channels, or None.

    Slices without a regularizer are filled with a constant (alive, zero)
    regularizer; an op none of whose slices is regularized gets None.

    Args:
      op: a tf.Operation.

    Returns:
      An OpRegularizer or None.
    """
    if op in self._regularizer_cache:
      return self._regularizer_cache[op]
    op_slices = self._op_slice_dict.get(op, [])
    regularizers = [self._op_regularizer_dict.get(s) for s in op_slices]
    if not any(r is not None for r in regularizers):
      result = None
    else:
      with self._graph.as_default(), tf.name_scope('morph_net'):
        regularizers = [
            r if r is not None else
            constant_op_regularizer.ConstantOpRegularizer(s.slice.size)
            for r, s in zip(regularizers, op_slices)]
        result = (regularizers[0] if len(regularizers) == 1 else
                  concat_and_slice_regularizers.ConcatRegularizer(regularizers))
    self._regularizer_cache[op] = result
    return result

  def channel_range(self, tensor: tf.Tensor):
    """Maps a tensor to (op, start, size) in its producer's channel space.

    Returns None when the producer is outside the analysis or the tensor is
    not a channel tensor of its producer.
    """
    op = tensor.op
    if op not in self._op_set or self._num_channels.get(op) is None:
      return None
    index = list(op.outputs).index(tensor) if len(op.outputs) > 1 else 0
    channel_range = self._handler(op).get_output_channel_range(op, index)
    if channel_range is None:
      return None
    return (op, channel_range[0], channel_range[1])

  def group_channels(self, op_a, start_a, op_b, start_b, size) -> None:
    """Declares channels [start_a, +size) of op_a equal to [start_b, +size) of op_b.

    Args:
      op_a: a tf.Operation in the analysis.
      start_a: first channel in op_a's channel space.
      op_b: a tf.Operation in the analysis.
      start_b: first channel in op_b's channel space.
      size: number of channels.

    Raises:
      UnsupportedGraphError: when a range falls outside an op's channels.
    """
    if size <= 0 or (op_a is op_b and start_a == start_b):
      return
    for op, start in ((op_a, start_a), (op_b, start_b)):
      channels = self._num_channels.get(op)
      if channels is None or start < 0 or start + size > channels:
        raise errors.UnsupportedGraphError(
            'Cannot group channels [%d, %d) of op %s, which has %s channels. '
            'Its op handler declared an impossible grouping; register a '
            'handler for op type %s.' % (start, start + size,
                                         op_handler_util.describe_op(op),
                                         channels, op.type))
    self._edges[op_a].append((start_a, size, op_b, start_b))
    self._edges[op_b].append((start_b, size, op_a, start_a))

  def group_tensors(self, tensor_a: tf.Tensor, tensor_b: tf.Tensor) -> bool:
    """Groups the channels of two tensors if both are known and equal in size.

    Returns:
      True if the channels were grouped.
    """
    range_a = self.channel_range(tensor_a)
    range_b = self.channel_range(tensor_b)
    if range_a is None or range_b is None or range_a[2] != range_b[2]:
      return False
    self.group_channels(range_a[0], range_a[1], range_b[0], range_b[1],
                        range_a[2])
    return True

  # ---------------------------------------------------------------------------
  # Analysis steps.

  def _handler(self, op):
    return self._op_handler_dict[op.type]

  def _collect_ops(self, output_boundary, input_boundary):
    """Walks backwards from the outputs; returns the ops in graph order."""
    stop = set(input_boundary)
    visited = set()
    stack = [op for op in output_boundary if op not in stop]
    while stack:
      op = stack.pop()
      if op in visited:
        continue
      visited.add(op)
      for tensor in op.inputs:
        producer = tensor.op
        if producer not in visited and producer not in stop:
          stack.append(producer)
    order = {op: i for i, op in enumerate(self._graph.get_operations())}
    return sorted(visited, key=lambda op: order.get(op, len(order)))

  def _check_source_channels(self):
    for op in self._source_ops:
      if not self._num_channels.get(op):
        raise errors.UnsupportedGraphError(
            'Op %s is a regularization source but its number of output '
            'channels is unknown (shape %s). Give the network input a static '
            'channel dimension (for example keras.Input(shape=(H, W, C)) or '
            'tensor.set_shape).' % (op_handler_util.describe_op(op),
                                    op.outputs[0].shape))

  def _apply_force_group(self, force_group):
    for regex in force_group:
      pattern = re.compile(regex)
      matched = [op for op in self._ops if pattern.search(op.name)]
      if not matched:
        raise errors.InvalidArgumentError(
            'force_group regex %r matches no op between the boundaries (%d '
            'ops, for example %s). Fix the regex or the boundaries.' %
            (regex, len(self._ops), _example_names(self._ops)))
      sizes = {op: self._num_channels.get(op) for op in matched}
      if len(set(sizes.values())) != 1 or None in sizes.values():
        raise errors.InvalidArgumentError(
            'force_group regex %r matches ops whose channel counts differ or '
            'are unknown, so they cannot be grouped: %s. Make the regex match '
            'only ops of one width.' % (regex, ', '.join(
                '%s: %s' % (op_handler_util.describe_op(op), size)
                for op, size in sizes.items())))
      first = matched[0]
      for op in matched[1:]:
        self.group_channels(first, 0, op, 0, sizes[first])

  def _refine_slices(self) -> Dict[tf.Operation, List[OpSlice]]:
    """Splits channel spaces so every declaration maps whole slices."""
    points = {}
    worklist = []
    for op in self._ops:
      channels = self._num_channels.get(op)
      if channels:
        points[op] = {0, channels}
    for op, edges in self._edges.items():
      for start, size, _, _ in edges:
        points[op].update((start, start + size))
    for op, op_points in points.items():
      worklist.extend((op, p) for p in op_points)
    steps = 0
    while worklist:
      op, point = worklist.pop()
      for start, size, other, other_start in self._edges.get(op, ()):
        if start < point < start + size:
          mapped = other_start + point - start
          if mapped not in points[other]:
            points[other].add(mapped)
            worklist.append((other, mapped))
        steps += 1
      if steps > self._iteration_limit:
        raise errors.UnsupportedGraphError(
            'Channel grouping did not converge within %d steps (last op %s).'
            % (self._iteration_limit, op_handler_util.describe_op(op)))
    op_slice_dict = {}
    for op in self._ops:
      if op not in points:
        continue
      bounds = sorted(points[op])
      op_slice_dict[op] = [
          OpSlice(op, Slice(a, b - a)) for a, b in zip(bounds, bounds[1:])]
    return op_slice_dict

  def _build_groups(self) -> Dict[OpSlice, OpGroup]:
    union_find = _UnionFind()
    starts = {}
    for op, op_slices in self._op_slice_dict.items():
      starts[op] = [s.slice.start_index for s in op_slices]
      for op_slice in op_slices:
        union_find.add((op, op_slice.slice.start_index))
    for op, edges in self._edges.items():
      op_starts = starts[op]
      for start, size, other, other_start in edges:
        index = bisect.bisect_left(op_starts, start)
        while index < len(op_starts) and op_starts[index] < start + size:
          union_find.union((op, op_starts[index]),
                           (other, other_start + op_starts[index] - start))
          index += 1
    members = collections.defaultdict(list)
    for op in self._ops:
      for op_slice in self._op_slice_dict.get(op, ()):
        members[union_find.find((op, op_slice.slice.start_index))].append(
            op_slice)
    source_set = set(self._source_ops)
    op_group_dict = {}
    for op_slices in members.values():
      group = OpGroup(op_slices, [s for s in op_slices if s.op in source_set])
      for op_slice in op_slices:
        op_group_dict[op_slice] = group
    return op_group_dict

  def _compile_blacklist(self, regexes):
    patterns = []
    for regex in regexes:
      pattern = re.compile(regex)
      if not any(pattern.search(op.name) for op in self._ops):
        raise errors.InvalidArgumentError(
            'regularizer_blacklist regex %r matches no op between the '
            'boundaries (%d ops, for example %s). Fix the regex or remove it.'
            % (regex, len(self._ops), _example_names(self._ops)))
      patterns.append(pattern)
    return patterns

  def _is_blacklisted(self, group: OpGroup) -> bool:
    return any(p.search(s.op.name) for p in self._blacklist
               for s in group.op_slices)

  def _create_regularizers(self):
    for group in self.op_groups:
      if not group.source_op_slices or self._is_blacklisted(group):
        continue
      regularizers = [
          self._handler(s.op).create_regularizer(s)
          for s in group.source_op_slices]
      if len(regularizers) == 1:
        regularizer = regularizers[0]
      else:
        regularizer = self._create_grouping_regularizer(regularizers)
      for op_slice in group.op_slices:
        self._op_regularizer_dict[op_slice] = regularizer


def _example_names(ops, count=3):
  names = [op.name for op in ops if op.type not in ('Const', 'Placeholder')]
  return ', '.join("'%s'" % n for n in names[:count]) or 'none'
