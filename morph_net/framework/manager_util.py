"""Argument checks, errors and small containers of the OpRegularizerManager.

Kept apart from `op_regularizer_manager` so that module reads as the analysis
itself. Every error names the argument or the ops involved and the fix.
"""

import collections
import contextlib
import gc
import re

import tensorflow as tf

from morph_net import errors
from morph_net.framework import graph_util
from morph_net.framework import op_handler_util

__all__ = [
    'OpList', 'OpQueue', 'StallWatch', 'build_together',
    'check_blacklist_used', 'gc_paused',
    'check_boundary', 'check_force_group', 'check_regex_list',
    'check_source_channels', 'not_converged_error'
]

# Most ops an error message lists by name.
_MAX_LISTED_OPS = 20
# Idle steps before the first snapshot of the queue (short idle runs, an op
# processed again without news, are normal and cost nothing to watch).
_FIRST_SNAPSHOT = 64


class OpQueue(collections.deque):
  """The manager's work queue: a deque with O(1) membership tests.

  Ops are appended on the right, popped from the right, and `extendleft`
  queues ops to run after everything else, as in the original. The manager
  never queues an op twice, so one set tracks membership.
  """

  def __init__(self, ops=()):
    super().__init__(ops)
    self._members = set(self)

  def __contains__(self, op):
    return op in self._members

  def append(self, op):
    super().append(op)
    self._members.add(op)

  def appendleft(self, op):
    super().appendleft(op)
    self._members.add(op)

  def extend(self, ops):
    for op in ops:
      self.append(op)

  def extendleft(self, ops):
    for op in ops:
      self.appendleft(op)

  def pop(self):
    op = super().pop()
    self._members.discard(op)
    return op

  def popleft(self):
    op = super().popleft()
    self._members.discard(op)
    return op

  def clear(self):
    super().clear()
    self._members.clear()


class OpList(list):
  """The analysed ops in graph order: a read-only list with O(1) `in`.

  What `OpRegularizerManager.ops` returns (the original returned a set;
  handlers test membership often, callers also iterate in order and compare
  with lists).

  Raises:
    TypeError: on any attempt to change it.
  """

  def __init__(self, ops=()):
    super().__init__(ops)
    self._members = frozenset(self)

  def __contains__(self, op):
    return op in self._members

  def _read_only(self, *args, **kwargs):
    del args, kwargs  # Unused.
    raise TypeError('OpRegularizerManager.ops is read-only; change a copy: '
                    'ops = list(manager.ops).')

  append = extend = insert = remove = pop = clear = sort = reverse = _read_only
  __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only


class StallWatch(object):
  """Detects a work queue that cycles while no slice or group changes.

  The handlers are deterministic functions of the manager's slices and groups
  and of the queue, so if the queue comes back to the same content with no
  change in between, the analysis would loop forever. Snapshots are taken
  after 64, 128, 256, ... idle steps (Brent's cycle detection), which finds
  any such cycle within a few of its periods.
  """

  def __init__(self):
    self._version = None
    self._idle_steps = 0
    self._next_snapshot = _FIRST_SNAPSHOT
    self._snapshot = None

  def is_stalled(self, version, queue) -> bool:
    """Records one processing step; returns True if the queue cycles idle.

    Args:
      version: the manager's change counter after the step.
      queue: the work queue after the step.

    Returns:
      True if the queue repeats an earlier idle state.
    """
    if version != self._version:
      self._version = version
      self._idle_steps, self._snapshot = 0, None
      self._next_snapshot = _FIRST_SNAPSHOT
      return False
    self._idle_steps += 1
    if (self._snapshot is not None and len(queue) == len(self._snapshot) and
        tuple(queue) == self._snapshot):
      return True
    if self._idle_steps == self._next_snapshot:
      self._snapshot = tuple(queue)
      self._next_snapshot *= 2
    return False


@contextlib.contextmanager
def gc_paused():
  """Pauses Python's cyclic garbage collector inside the block.

  The analysis allocates many small lists and sets; with a large Keras model
  alive, each collection the allocations trigger scans every object of the
  model (on a traced ResNet152 that was most of the analysis time). Nothing
  the analysis allocates is cyclic garbage, and the collector's previous
  state is restored on exit.

  Yields:
    None.
  """
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()


def build_together(regularizers) -> None:
  """Lets each regularizer class build the vectors of its instances at once.

  A class with a `build_together(regularizers)` class method (for example
  `GammaL1Regularizer`, one per batch norm) can build all its instances with
  a few graph ops instead of a few per instance; the others build their
  vectors as usual.

  Args:
    regularizers: the source regularizers of a network, any types.
  """
  for regularizer_class in dict.fromkeys(type(r) for r in regularizers):
    build = getattr(regularizer_class, 'build_together', None)
    if build is not None:
      build(regularizers)


def check_boundary(boundary, argument_name, allow_empty=True):
  """Returns a boundary as a list of tf.Operation.

  Args:
    boundary: None, a tf.Operation, or a list of tf.Operation.
    argument_name: 'output_boundary' or 'input_boundary', for messages.
    allow_empty: whether an empty boundary is accepted.

  Returns:
    List of tf.Operation.

  Raises:
    InvalidArgumentError: for tensors, other objects, or an empty boundary
      when it is not allowed.
  """
  if boundary is None:
    boundary = []
  elif isinstance(boundary, tf.Operation):
    boundary = [boundary]
  ops = []
  for item in boundary:
    if isinstance(item, tf.Operation):
      ops.append(item)
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
  if not ops and not allow_empty:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `%s`. Expected a non-empty list of '
        'tf.Operation (for example `[logits.op]`).' % argument_name)
  return ops


def check_regex_list(regexes, argument_name):
  """Returns `regexes` as a list of strings that compile.

  Args:
    regexes: None or a list (or tuple) of regex strings.
    argument_name: 'force_group' or 'regularizer_blacklist', for messages.

  Returns:
    List of str.

  Raises:
    InvalidArgumentTypeError: if `regexes` is not a list of strings.
    InvalidArgumentError: if a regex does not compile.
  """
  if regexes is None:
    return []
  if not isinstance(regexes, (list, tuple)) or not all(
      isinstance(regex, str) for regex in regexes):
    raise errors.InvalidArgumentTypeError(
        'Invalid value for argument `%s`: %s must be a list of regex. '
        'Received: %r (%s). Pass a list, for example %s=[%r].' %
        (argument_name, argument_name, regexes, type(regexes).__name__,
         argument_name, regexes if isinstance(regexes, str) else 'conv1/'))
  for regex in regexes:
    try:
      re.compile(regex)
    except re.error as e:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `%s`: regex %r does not compile (%s).' %
          (argument_name, regex, e)) from e
  return list(regexes)


def check_source_channels(op):
  """Raises if a source op's channel count is unknown.

  Args:
    op: a tf.Operation whose handler says it is a source.

  Raises:
    UnsupportedGraphError: if the op has no static channel count.
  """
  if op_handler_util.get_op_size(op) == 0:
    raise errors.UnsupportedGraphError(
        'Op %s is a regularization source but its number of output channels '
        'is unknown (shape %s). Give the network input a static channel '
        'dimension (for example keras.Input(shape=(H, W, C)) or '
        'tensor.set_shape).' % (graph_util.describe_op(op),
                                op.outputs[0].shape if op.outputs else None))


def check_force_group(regex, matched, op_slice_dict, analysed):
  """Checks the ops a force_group regex matched can be grouped.

  Args:
    regex: the regex.
    matched: the analysed ops (with slices) whose names it matches.
    op_slice_dict: the manager's op -> slices mapping.
    analysed: all analysed ops, for the message when nothing matched.

  Raises:
    InvalidArgumentError: if nothing matched, an op has several slices, or
      the ops differ in size.
  """
  if not matched:
    raise errors.InvalidArgumentError(
        'force_group regex %r matches no op between the boundaries (%d ops, '
        'for example %s). Fix the regex or the boundaries.' %
        (regex, len(analysed), _example_names(analysed)))
  sliced = [op.name for op in matched if len(op_slice_dict[op]) != 1]
  if sliced:
    raise errors.InvalidArgumentError(
        'force_group regex %r: Cannot force-group ops with more than 1 '
        'OpSlice: %s. These ops are concatenations or slices of several '
        'groups; make the regex match only whole ops.' % (regex, sliced))
  sizes = [op_slice_dict[op][0].slice.size for op in matched]
  if len(set(sizes)) > 1:
    raise errors.InvalidArgumentError(
        'force_group regex %r: Cannot force-group ops with different sizes: '
        '%s (%s). Make the regex match only ops of one width.' %
        (regex, [op.name for op in matched], ', '.join(
            '%s: %d' % (graph_util.describe_op(op), size)
            for op, size in zip(matched, sizes))))


def check_blacklist_used(blacklist, used, analysed):
  """Raises if a regularizer_blacklist regex matched no analysed op.

  The message is the original's word for word (code and tests written
  against the original compare it literally); what was analysed and the fix
  are attached as an exception note (PEP 678), which a traceback prints
  under the message.

  Args:
    blacklist: list of regexes.
    used: set of the regexes that matched some group.
    analysed: the analysed ops, for the note.

  Raises:
    InvalidArgumentError: naming the first unused regex, which its
      attribute `unused_regex` holds (so callers can tell which entry
      matched nothing without parsing the message).
  """
  for regex in blacklist:
    if regex not in used:
      error = errors.InvalidArgumentError(
          'Blacklist regex never used: %r.' % regex)
      error.unused_regex = regex
      error.add_note(
          'regularizer_blacklist regex %r matches no op between the '
          'boundaries (%d ops, for example %s). Fix the regex or remove it.'
          % (regex, len(analysed), _example_names(analysed)))
      raise error


def not_converged_error(queue, reason):
  """Returns the error for an analysis that did not finish.

  Args:
    queue: the ops still queued.
    reason: why the manager stopped.

  Returns:
    An AnalysisNotConvergedError (also a RuntimeError).
  """
  ops = list(queue)
  names = ['%s (%s)' % (op.name, op.type) for op in ops[:_MAX_LISTED_OPS]]
  if len(ops) > _MAX_LISTED_OPS:
    names.append('... %d more' % (len(ops) - _MAX_LISTED_OPS))
  op_type = ops[0].type if ops else 'OpType'
  return errors.AnalysisNotConvergedError(
      'OpRegularizerManager could not handle ops: %s; %s. Their handlers '
      'could not group them with their neighbours, usually because an '
      'element-wise op joins tensors of different channel counts or an op '
      'type changes the channel count without a handler that says so. '
      'Register a handler for such op types, for example '
      "op_handler_dict['%s'] = leaf_op_handler.LeafOpHandler()." %
      (names, reason, op_type))


def _example_names(ops, count=3):
  names = [op.name for op in ops if op.type not in ('Const', 'Placeholder')]
  return ', '.join("'%s'" % name for name in names[:count]) or 'none'
