"""Helpers for graphs whose regularized tensors live inside a TPU loop.

On a TPU, the training step runs inside a `tf.while_loop`, so tensors the
network computes (a gate's sampled mask, a weight read) cannot be fetched from
the CPU side of the graph. The original library worked around that by
copying such tensors into variables (`write_to_variable`) and reading the
variables back on the CPU (`read_from_variable`, `maybe_convert_to_variable`).

Off-TPU, as here, these functions behave as the original's do off-TPU:
`read_from_variable` returns the tensor itself unless `run_on_cpu()` is active,
and `maybe_convert_to_variable` maps a variable read back to its variable.

The store of written tensors (`var_store`) is kept per graph: entries written
in one graph are invisible from another, so graphs built one after another
(one per test, one per model) do not see each other's copies.
"""

import collections.abc
import contextlib
import threading
import weakref

from absl import logging
import tensorflow as tf

from morph_net import errors

__all__ = [
    'run_on_cpu', 'is_on_cpu', 'get_variable_name', 'maybe_convert_to_variable',
    'var_store', 'write_to_variable', 'read_from_variable',
    'is_intermediate_var',
]

_v1 = tf.compat.v1
_state = threading.local()
# Op types a variable read may pass through on its way from the variable.
_FORWARDING_OP_TYPES = frozenset(['Identity', 'Enter', 'Switch'])


@contextlib.contextmanager
def run_on_cpu():
  """Context in which `read_from_variable` returns the stored (CPU) copy.

  Nested uses restore the previous state on exit. The flag is per thread.

  Yields:
    None.
  """
  previous = is_on_cpu()
  _state.on_cpu = True
  try:
    yield
  finally:
    _state.on_cpu = previous


def is_on_cpu() -> bool:
  """Whether the caller is inside `run_on_cpu()`."""
  return getattr(_state, 'on_cpu', False)


def get_variable_name(read_variable_op: tf.Operation) -> str:
  """Returns the name of the variable a `ReadVariableOp` reads.

  Args:
    read_variable_op: an op of type ReadVariableOp.

  Returns:
    The variable's op name (for example 'conv1/BatchNorm/gamma').

  Raises:
    InvalidArgumentError: if the op is not a ReadVariableOp, or its handle
      does not come from a variable (through single-input forwarding ops).
  """
  if read_variable_op.type != 'ReadVariableOp':
    raise errors.InvalidArgumentError(
        'Invalid value for argument `read_variable_op`. Expected an op of '
        "type ReadVariableOp. Received: '%s' (%s)" % (read_variable_op.name,
                                                      read_variable_op.type))
  op = read_variable_op
  while True:
    if op.type in ('VarHandleOp', 'VariableV2'):
      return op.name
    if op.type == 'Placeholder' and '/ReadVariableOp/' in op.name:
      # A handle passed into a loop body by the TPU rewriter.
      return op.name.split('/ReadVariableOp/')[1]
    if len(op.inputs) != 1:
      raise errors.InvalidArgumentError(
          "The handle read by '%s' comes from '%s' (%s), not from a variable. "
          'Pass the read of a resource variable.' % (
              read_variable_op.name, op.name, op.type))
    op = op.inputs[0].op


def _find_variable(tensor: tf.Tensor, name: str):
  """Returns the tf.Variable of `tensor`'s graph called `name`."""
  with _v1.variable_scope(_v1.VariableScope(reuse=True, name=''),
                         reuse=True):
    try:
      return _v1.get_variable(name)
    except ValueError:
      logging.info('Variable %s was not created with tf.get_variable(); '
                   'looking for it in the GLOBAL_VARIABLES collection.', name)
  matches = [v for v in tensor.graph.get_collection(
      _v1.GraphKeys.GLOBAL_VARIABLES) if v.op.name == name]
  if len(matches) != 1:
    raise errors.UnsupportedGraphError(
        "Tensor '%s' reads variable '%s', which is %s in the graph's "
        'GLOBAL_VARIABLES collection. Create the variable with '
        'tf.compat.v1.get_variable or tf.Variable in this graph.' % (
            tensor.name, name,
            'not' if not matches else 'more than once'))
  return matches[0]


def maybe_convert_to_variable(tensor):
  """Returns the variable `tensor` reads, or `tensor` itself.

  A tensor that is the read of a resource variable (possibly through
  Identity ops) becomes that variable, so that a value computed in a TPU loop
  can be read again outside of it. Other tensors (reads of ref variables
  included) are returned unchanged. Inside `run_on_cpu()`, tensors written
  with `write_to_variable` map to their variable.

  Args:
    tensor: a tf.Tensor.

  Returns:
    A tf.Variable or `tensor`.

  Raises:
    UnsupportedGraphError: when the read variable cannot be found in the graph.
  """
  if is_on_cpu() and tensor in var_store:
    return var_store[tensor]
  op = tensor.op
  while op.type in _FORWARDING_OP_TYPES and len(op.inputs) == 1:
    op = op.inputs[0].op
  if op.type != 'ReadVariableOp':
    return tensor
  name = get_variable_name(op)
  logging.info('Converting tensor %s to variable %s.', tensor.name, name)
  return _find_variable(tensor, name)


class _GraphKeyedStore(collections.abc.MutableMapping):
  """A dict from tensors to variables, with one namespace per graph.

  Lookups, iteration and `values()` see only the entries of the current
  default graph (or of the key's graph for key lookups), so stores of graphs
  that are gone do not leak into later ones.
  """

  def __init__(self):
    self._by_graph = weakref.WeakKeyDictionary()

  def _entries(self, graph=None):
    graph = graph if graph is not None else _v1.get_default_graph()
    return self._by_graph.setdefault(graph, {})

  def __getitem__(self, tensor):
    return self._entries(tensor.graph)[tensor]

  def __setitem__(self, tensor, variable):
    self._entries(tensor.graph)[tensor] = variable

  def __delitem__(self, tensor):
    del self._entries(tensor.graph)[tensor]

  def __contains__(self, tensor):
    graph = getattr(tensor, 'graph', None)
    return graph is not None and tensor in self._entries(graph)

  def __iter__(self):
    return iter(self._entries())

  def __len__(self):
    return len(self._entries())


var_store = _GraphKeyedStore()


def write_to_variable(tensor: tf.Tensor, fail_if_exists: bool = True):
  """Copies `tensor` into a new variable, for a later read on the CPU.

  The variable is named 'tpu_util__<tensor op name>' at the top level of the
  variable scopes, whatever the enclosing scope and its reuse flag.

  Args:
    tensor: the tf.Tensor to store.
    fail_if_exists: raise if the variable exists already (True), or reuse it.

  Returns:
    A copy of `tensor` that runs the assignment first; the copy and `tensor`
    both map to the variable in `var_store`.

  Raises:
    InvalidArgumentError: if `tensor` is not a tf.Tensor (a tf.Variable is
      not accepted: read it first).
    ValueError: from tf.compat.v1.get_variable, when `fail_if_exists` is True
      and the variable exists.
  """
  if not isinstance(tensor, tf.Tensor) or isinstance(tensor, tf.Variable):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `tensor`. Expected a tf.Tensor. '
        'Received: %r (%s)' % (tensor, type(tensor).__name__))
  name = 'tpu_util__' + tensor.op.name
  reuse = False if fail_if_exists else _v1.AUTO_REUSE
  with _v1.variable_scope(_v1.VariableScope(reuse=False, name=''),
                          reuse=reuse):
    variable = _v1.get_variable(name, shape=tensor.shape, dtype=tensor.dtype,
                                trainable=False, use_resource=True)
  var_store[tensor] = variable
  with tf.control_dependencies([variable.assign(tensor)]):
    copy = tf.identity(tensor)
  var_store[copy] = variable
  return copy


def read_from_variable(tensor: tf.Tensor):
  """Returns the stored copy inside `run_on_cpu()`, else `tensor` itself.

  Raises:
    KeyError: inside `run_on_cpu()`, for a tensor never written.
  """
  if is_on_cpu():
    return var_store[tensor]
  return tensor


def is_intermediate_var(variable) -> bool:
  """Whether `variable` was created by `write_to_variable` (in its graph)."""
  graph = getattr(variable, 'graph', None)
  entries = var_store._entries(graph) if graph is not None else {}  # pylint: disable=protected-access
  return any(v is variable for v in entries.values())
