"""OpRegularizerManager: groups the channels of a graph and regularizes groups.

The model is the original MorphNet's. A depth-first walk from the output
boundary (stopping at the input boundary) finds the ops to analyse and queues
the regularization sources. The manager then pops ops from that work queue and
lets each op's handler group the op's slices with its neighbours'
(`group_op_slices`, `slice_op`) or queue neighbours that are not ready
(`process_ops`, `process_ops_last`). When the queue is empty, every group with
sources gets one regularizer (several sources are combined by the grouping
regularizer).

The slices and groups live in `slice_groups.SliceGroupStore`, which the
manager extends with the queue, the analysis steps and regularizer creation.

What differs from the original is cost and failure behaviour, not results:
membership tests use sets, sources run from the input side, and sizes and
source tests are memoized during the analysis. When the queue cycles without
changing any group, the ops left are waiting for each other: on a graph cycle
(a TF1 while loop) they get groups of their own and the analysis goes on;
otherwise (an element-wise op joining different widths) the manager stops at
once with an error naming them, where the original spun until its iteration
limit.
"""

import re
from typing import List, Optional

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.framework import concat_and_slice_regularizers
from morph_net.framework import constant_op_regularizer
from morph_net.framework import graph_util
from morph_net.framework import grouping_regularizers
from morph_net.framework import manager_util
from morph_net.framework import op_handler_util
from morph_net.framework import slice_groups
from morph_net.framework import static_shapes
from morph_net.framework.op_slices import OpGroup
from morph_net.framework.op_slices import OpSlice
from morph_net.framework.op_slices import Slice

__all__ = ['ITERATION_LIMIT', 'OpGroup', 'OpRegularizerManager', 'OpSlice',
           'Slice']

# Bound on the ops the manager processes before it assumes it is stuck.
ITERATION_LIMIT = 1000000


class OpRegularizerManager(slice_groups.SliceGroupStore):
  """Assigns channel groups and regularizers to the ops of a network.

  Args:
    output_boundary: list of tf.Operation where the analysis starts (for
      example `[logits.op]`). It may be empty, as in the original: the
      manager then holds no ops, and its caller (a handler test, a custom
      analysis) groups slices itself with `group_op_slices` and `slice_op`.
      Network regularizers refuse an empty boundary.
    op_handler_dict: mapping from op type to OpHandler, for example
      `morph_net.op_handlers.op_handlers.get_gamma_op_handler_dict()`. A
      plain dict must hold every op type met; `op_handlers.OpHandlerDict`
      (what the registry factories return) and `collections.defaultdict`
      answer unknown types. None (the original's default) is an empty dict:
      enough for a manager whose groups the caller sets by hand.
    create_grouping_regularizer: callable taking a list of OpRegularizer and
      returning one; combines the sources of a group (default: max).
    force_group: list of regexes; for each, the groups of the matching ops
      are merged (the ops must have one slice each, of one size).
    regularizer_blacklist: list of regexes; groups with a matching op get no
      regularizer.
    input_boundary: list of tf.Operation where the walk stops (excluded).
    iteration_limit: most ops processed before the analysis gives up.

  Raises:
    InvalidArgumentError: for bad boundaries, regexes that match nothing, or
      forced groups whose ops differ in size or have several slices.
    InvalidArgumentTypeError: if force_group or regularizer_blacklist is not a
      list of regexes.
    UnsupportedGraphError: when a source op has an unknown channel count.
    KeyLookupError: (also a KeyError) when `op_handler_dict` has no handler
      for the type of an op the analysis meets; the message names the op.
    AnalysisNotConvergedError: (also a RuntimeError) when the handlers keep
      queueing ops without settling, or the iteration limit is reached.
  """

  def __init__(self,
               output_boundary: List[tf.Operation],
               op_handler_dict=None,
               create_grouping_regularizer=(
                   grouping_regularizers.MaxGroupingRegularizer),
               force_group: Optional[List[str]] = None,
               regularizer_blacklist: Optional[List[str]] = None,
               input_boundary: Optional[List[tf.Operation]] = None,
               iteration_limit: int = ITERATION_LIMIT):
    force_group = manager_util.check_regex_list(force_group, 'force_group')
    blacklist = manager_util.check_regex_list(regularizer_blacklist,
                                              'regularizer_blacklist')
    output_boundary = manager_util.check_boundary(output_boundary,
                                                  'output_boundary')
    input_boundary = manager_util.check_boundary(input_boundary,
                                                 'input_boundary')
    self._op_handler_dict = {} if op_handler_dict is None else op_handler_dict
    self._graph = (output_boundary[0].graph if output_boundary else
                   tf.compat.v1.get_default_graph())
    super().__init__()
    self._op_regularizer_dict = {}  # OpSlice -> OpRegularizer or None.
    self._op_deque = manager_util.OpQueue()
    self._all_ops = set()
    self._ops_view = None
    self._regularizer_cache = {}
    self._is_source_memo = {}

    with op_handler_util.cached_op_sizes(), manager_util.gc_paused():
      self._dfs_for_source_ops(output_boundary, input_boundary)
      logging.info('OpRegularizerManager found %d ops and %d sources.',
                   len(self._all_ops), len(self._op_deque))
      self._process_queue(iteration_limit)
      self._force_group_ops(force_group)
    with self._graph.as_default(), tf.name_scope('morph_net'):
      self._create_regularizers(
          blacklist,
          create_grouping_regularizer or
          grouping_regularizers.MaxGroupingRegularizer)

  # ---------------------------------------------------------------------------
  # The original's API.

  @property
  def ops(self):
    """The ops between the boundaries, in graph order (a read-only list)."""
    if self._ops_view is None:
      self._ops_view = manager_util.OpList(self._in_graph_order(self._all_ops))
    return self._ops_view

  def get_regularizer(self, op: tf.Operation):
    """Returns the OpRegularizer of an op's output channels, or None.

    Slices without a regularizer get a constant one (alive, zero); an op none
    of whose slices is regularized gets None.

    Args:
      op: a tf.Operation.

    Returns:
      An OpRegularizer (a ConcatRegularizer for ops of several slices), or
      None.
    """
    op_slices = self.get_op_slices(op)
    regularizers = [self._op_regularizer_dict.get(s) for s in op_slices]
    if all(r is None for r in regularizers):
      return None
    with self._graph.as_default(), tf.name_scope('morph_net'):
      for index, op_slice in enumerate(op_slices):
        if regularizers[index] is None:
          regularizers[index] = constant_op_regularizer.ConstantOpRegularizer(
              op_slice.slice.size)
          self._op_regularizer_dict[op_slice] = regularizers[index]
      if len(regularizers) == 1:
        return regularizers[0]
      key = (op, tuple(id(r) for r in regularizers))
      if key not in self._regularizer_cache:
        self._regularizer_cache[key] = (
            regularizers,
            concat_and_slice_regularizers.ConcatRegularizer(regularizers))
      return self._regularizer_cache[key][1]

  def get_group_regularizer(self, op_group):
    """The OpRegularizer of `op_group`'s channels (None: not regularized)."""
    if not op_group.op_slices:
      return None
    return self._op_regularizer_dict.get(op_group.op_slices[0])

  def set_group_regularizer(self, op_group, regularizer) -> None:
    """Makes `regularizer` the OpRegularizer of every slice of `op_group`.

    For wrappers of the group's regularizer built after the analysis (for
    example `MinimumAliveRegularizer`); later `get_regularizer` calls
    return it.
    """
    for op_slice in op_group.op_slices:
      self._op_regularizer_dict[op_slice] = regularizer

  def process_ops(self, ops):
    """Queues `ops` (those between the boundaries, not queued yet)."""
    queue = self._op_deque
    for op in ops:
      if op not in queue and op in self._all_ops:
        queue.append(op)

  def process_ops_last(self, ops):
    """Queues `ops` to be processed after everything queued so far.

    A handler that cannot group its op yet queues itself this way, so it runs
    again once its neighbours have been processed.

    Args:
      ops: list of tf.Operation.
    """
    queue = self._op_deque
    new_ops = []
    for op in ops:
      if op not in queue and op not in new_ops:
        new_ops.append(op)
    queue.extendleft(new_ops)

  def is_source_op(self, op):
    """Whether `op` is a regularization source (asks its handler, once)."""
    answer = self._is_source_memo.get(op)
    if answer is None:
      handler = self.get_handler(op)
      is_source = getattr(handler, 'is_source', None)
      answer = handler.is_source_op if is_source is None else is_source(op)
      self._is_source_memo[op] = answer
    return answer

  def is_passthrough(self, op):
    """Whether `op`'s handler is passthrough."""
    return self.get_handler(op).is_passthrough

  def get_handler(self, op: tf.Operation):
    """The OpHandler of `op`'s type.

    Raises:
      KeyLookupError: when `op_handler_dict` has none; the message names the
        op and how to register one.
    """
    try:
      return self._op_handler_dict[op.type]
    except KeyError:
      raise errors.KeyLookupError(
          'No op handler for op %r (%s): op_handler_dict has no entry for '
          '%r. Pass a registry that answers every type, such as '
          'morph_net.op_handlers.op_handlers.get_gamma_op_handler_dict(), or '
          'register one: op_handler_dict[%r] = '
          'grouping_op_handler.GroupingOpHandler().' %
          (op.name, op.type, op.type, op.type)) from None

  # ---------------------------------------------------------------------------
  # Project extensions, used by the cost calculator and the Keras bridge.

  @property
  def graph(self) -> tf.Graph:
    """The graph of the analysed ops."""
    return self._graph

  @property
  def op_groups(self) -> List[OpGroup]:
    """The distinct OpGroups, in graph order of their first member op."""
    groups, seen = [], set()
    for op in self._in_graph_order(self._op_slice_dict):
      for op_slice in self._op_slice_dict[op]:
        group = self._op_group_dict.get(op_slice)
        if group is not None and id(group) not in seen:
          seen.add(id(group))
          groups.append(group)
    return groups

  @property
  def source_ops(self) -> List[tf.Operation]:
    """The ops with a source slice in some group, in graph order."""
    sources = {s.op for group in self.op_groups
               for s in group.source_op_slices}
    return self._in_graph_order(sources)

  def get_num_channels(self, op: tf.Operation) -> Optional[int]:
    """Returns the size of `op`'s channel space, or None if it has none."""
    return op_handler_util.get_op_size(op) or None

  def channel_range(self, tensor: tf.Tensor):
    """Maps a tensor to (op, start, size) in its producer's channel space.

    Args:
      tensor: a tf.Tensor.

    Returns:
      (producer op, first channel, channel count), or None when the producer
      is outside the analysis or the tensor is not a channel tensor of it
      (for example a batch-norm output of another width).
    """
    op = tensor.op
    if op not in self._all_ops or graph_util.get_num_channels(tensor) is None:
      return None
    handler = self.get_handler(op)
    get_range = getattr(handler, 'get_output_channel_range', None)
    if get_range is not None:
      channel_range = get_range(op, tensor.value_index)
    else:
      size = graph_util.get_num_channels(tensor)
      channel_range = ((0, size) if size == op_handler_util.get_op_size(op)
                       else None)
    return None if channel_range is None else (op,) + tuple(channel_range)

  # ---------------------------------------------------------------------------
  # Analysis steps (the names of the original's private methods).

  def _dfs_for_source_ops(self, output_boundary, input_boundary=None):
    """Collects the ops upstream of `output_boundary` and queues sources.

    Reshapes whose static output shape misses dimensions their shape input
    proves (a Tensordot traced with an unknown batch) get them first, see
    `static_shapes`.
    """
    stop = set(input_boundary or ())
    to_visit = list(output_boundary)
    visited = set()
    while to_visit:
      op = to_visit.pop()
      visited.add(op)
      if op in stop:
        continue
      self._all_ops.add(op)
      static_shapes.refine_reshape_shape(op)
      if self.is_source_op(op):
        manager_util.check_source_channels(op)
        self.process_ops([op])
      for tensor in op.inputs:
        if tensor.op not in visited:
          to_visit.append(tensor.op)
    self._ops_view = None

  def _process_queue(self, iteration_limit):
    """Runs the handlers of queued ops until the queue is empty.

    The sources found by the walk are first ordered so the ones nearest the
    inputs run first (the original ran them in reverse walk order, from the
    outputs). The groups come out the same, but a residual stream is then
    grouped block after block in one pass, where the original waited one
    pass of the queue per block (about half of the handler runs on tf_slim
    ResNet-152).

    Args:
      iteration_limit: most handler runs.

    Raises:
      AnalysisNotConvergedError: when the queue cycles idle with nothing to
        seed, or after `iteration_limit` runs.
    """
    queue = self._op_deque
    sources = sorted(queue, key=lambda op: -op._id)  # pylint: disable=protected-access
    queue.clear()
    queue.extend(sources)
    watch = manager_util.StallWatch()
    iterations = 0
    while queue and iterations < iteration_limit:
      op = queue.pop()
      self.get_handler(op).assign_grouping(op, self)
      iterations += 1
      if (watch.is_stalled(self._version, queue) and
          not self._seed_waiting_ops(queue)):
        raise manager_util.not_converged_error(
            queue, 'its op handlers keep queueing these ops without changing '
            'any group')
    if iterations >= iteration_limit:
      raise manager_util.not_converged_error(
          queue, 'it reached its iteration limit (%d)' % iteration_limit)

  def _seed_waiting_ops(self, queue):
    """Gives the ungrouped slices of queued ops groups of their own.

    Ops on a graph cycle (a TF1 while loop: Merge, Switch, NextIteration) wait
    for each other's groups forever, so the original hung on them. Once the
    queue cycles idle, those ops get groups of their own; each can then group
    with its neighbours, and the groups merge around the cycle.

    Args:
      queue: the work queue.

    Returns:
      True if some slice got a group (the analysis can go on).
    """
    seeded = []
    for op in list(queue):
      for op_slice in self.get_op_slices(op):
        if op_slice not in self._op_group_dict:
          self.create_op_group_for_op_slice(
              op_slice, is_source=self.is_source_op(op))
          seeded.append(op)
    if seeded:
      logging.info('OpRegularizerManager: ops waiting on each other (a graph '
                   'cycle) start groups of their own: %s.',
                   sorted({op.name for op in seeded}))
    return bool(seeded)

  def _force_group_ops(self, force_group):
    """Merges the groups of the ops matching each force_group regex."""
    analysed = self._in_graph_order(self._op_slice_dict)
    for regex in force_group:
      pattern = re.compile(regex)
      matched = [op for op in analysed
                 if self._op_slice_dict[op] and pattern.search(op.name)]
      manager_util.check_force_group(regex, matched, self._op_slice_dict,
                                          analysed)
      self.group_op_slices([self._op_slice_dict[op][0] for op in matched])

  def _create_regularizers(self, blacklist, create_grouping_regularizer):
    """Creates one regularizer per group with sources (unless blacklisted)."""
    patterns = [re.compile(regex) for regex in blacklist]
    used = set()
    sources = []  # (group, its source regularizers or None if blacklisted)
    for group in self.op_groups:
      matches = {p.pattern for p in patterns
                 if any(p.search(s.op.name) for s in group.op_slices)}
      used.update(matches)
      if matches:
        logging.info('OpGroup not regularized due to blacklist: %s.', group)
      sources.append((group, None if matches else [
          self.get_handler(s.op).create_regularizer(s)
          for s in group.source_op_slices]))
    manager_util.build_together([r for _, regularizers in sources
                                 if regularizers for r in regularizers])
    for group, regularizers in sources:
      regularizer = None
      if regularizers:
        regularizer = (regularizers[0] if len(regularizers) == 1 else
                       create_grouping_regularizer(regularizers))
      for op_slice in group.op_slices:
        self._op_regularizer_dict[op_slice] = regularizer
    manager_util.check_blacklist_used(blacklist, used, self.ops)

  def _in_graph_order(self, ops):
    """Returns `ops` (any iterable) sorted by creation order in the graph."""
    order = {}
    for op in ops:
      order[op] = op._id  # pylint: disable=protected-access
    return sorted(order, key=order.get)
