"""Functions that compute tensors of a traced graph from live variables.

A regularization term built on a traced Keras model is a small part of a big
graph: the ops from a few hundred variable reads to one scalar. To call it
eagerly or inside a train step it must become a function of its own.
`tf.compat.v1.wrap_function(...).prune` does that by copying the subgraph op
by op in Python (`lift_to_graph`), about a millisecond per op. Here the
subgraph's NodeDefs are collected once (equal constants, which cost
builders create by the thousand, merged into one node) and imported in one
`tf.graph_util.import_graph_def` call into a new function whose inputs are
the same captured variable handles, which is several times faster. The new
function reads the live variables and is differentiable with respect to
them, as a pruned one is.

Only data inputs are followed: the subgraph of a term or a cost reads
variables and computes on them, so control dependencies (which a traced
inference graph does not have) are not kept. Subgraphs that call graph
functions are pruned the slow way.
"""

from typing import Any, Dict, List, Optional

import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_handler_util

__all__ = ['subgraph_function']

_COLOCATION_ATTR = '_class'


def _ops_reaching(fetches: List[tf.Tensor]) -> List[tf.Operation]:
  """Ops whose outputs the fetches depend on, inputs before their users."""
  order, seen = [], set()
  stack = [(t.op, False) for t in fetches]
  while stack:
    op, expanded = stack.pop()
    if expanded:
      order.append(op)
      continue
    if op in seen:
      continue
    seen.add(op)
    stack.append((op, True))
    stack.extend((t.op, False) for t in op.inputs if t.op not in seen)
  return order


def _calls_functions(op: tf.Operation) -> bool:
  for value in op.node_def.attr.values():
    if value.HasField('func') or value.list.func:
      return True
  return False


def _node_def(op: tf.Operation, renamed: Dict[str, str]):
  """The op's NodeDef without control inputs and colocation constraints.

  Data inputs from a node in `renamed` are read from its replacement.
  """
  node = op.node_def
  data_inputs = []
  for name in node.input:
    if name.startswith('^'):
      continue
    producer, _, index = name.partition(':')
    if producer in renamed:
      name = renamed[producer] + (':' + index if index else '')
    data_inputs.append(name)
  del node.input[:]
  node.input.extend(data_inputs)
  if _COLOCATION_ATTR in node.attr:
    del node.attr[_COLOCATION_ATTR]
  return node


def _constant_key(op: tf.Operation) -> Optional[bytes]:
  """Equal for Const ops with the same dtype and value; None for others."""
  if op.type != 'Const':
    return None
  attr = op.node_def.attr
  return attr['dtype'].SerializeToString() + attr['value'].SerializeToString()


def subgraph_function(function, fetches: Any):
  """A callable computing `fetches` of `function.graph` from live variables.

  Args:
    function: a `tf.compat.v1.wrap_function` result (a traced model).
    fetches: a tensor of `function.graph` or a nested structure of them
      (dicts, lists); they may depend on captured variables and constants,
      not on the function's inputs.

  Returns:
    A function without arguments returning `fetches`' structure of tensors;
    it can be called eagerly or inside a `tf.function`, and gradients flow
    to the captured variables.

  Raises:
    UnsupportedGraphError: if a fetch depends on an input of the traced
      function (the model's input data).
  """
  graph = function.graph
  flat = tf.nest.flatten(fetches)
  ops = _ops_reaching(flat)
  if any(_calls_functions(op) for op in ops):
    return function.prune(feeds=[], fetches=fetches)
  external_of = {id(internal): external
                 for external, internal in graph.captures}
  graph_def = tf.compat.v1.GraphDef()
  graph_def.versions.CopyFrom(graph.graph_def_versions)
  captured = {}  # internal placeholder tensor name -> external handle
  constants = {}  # constant key -> name of the node kept for it
  renamed = {}  # name of a merged constant -> name of the kept one
  for op in ops:
    if op.type == 'Placeholder':
      external = external_of.get(id(op.outputs[0]))
      if external is None:
        raise errors.UnsupportedGraphError(
            'The value asked for depends on the model input through op %s; '
            'a regularization term or cost must depend only on variables. '
            'Report this with the model that produced it.' %
            op_handler_util.describe_op(op))
      captured[op.outputs[0].name] = external
      continue
    key = _constant_key(op)
    if key is not None and key in constants:
      renamed[op.name] = constants[key]
      continue
    if key is not None:
      constants[key] = op.name
    graph_def.node.append(_node_def(op, renamed))
  output_names = ['%s:%d' % (renamed.get(t.op.name, t.op.name),
                             t.value_index) for t in flat]

  def body():
    default = tf.compat.v1.get_default_graph()
    input_map = {name: default.capture(external)
                 for name, external in captured.items()}
    outputs = tf.graph_util.import_graph_def(
        graph_def, input_map=input_map, return_elements=output_names,
        name='')
    return tf.nest.pack_sequence_as(fetches, outputs)

  extracted = tf.compat.v1.wrap_function(body, [])
  # As WrappedFunction.prune does: calls then mark the model's variables as
  # read, so a GradientTape watching them sees the function's gradient.
  extracted.graph.variables = graph.variables
  return extracted

