"""Tracing a Keras model, once, into a graph MorphNet can analyse.

`TracedModel(model)` traces `model(inputs, training=False)` with
`tf.compat.v1.wrap_function`; the graph captures the model's variables. The
traced model owns that graph, its boundary ops (the model's input and output
ops) and the map from ops to the Keras layers whose weights they read. The
network regularizer, structure costing, export and expansion all work on the
same trace. Functions computed from the graph (`TracedModel.function_of`)
read the live variables, so the regularization term, the cost and the alive
vectors follow training and are differentiable with respect to the model's
variables.
"""

import contextlib
import re
from typing import Any, Collection, Dict, Iterable, List, Optional, Sequence

import tensorflow as tf

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.framework import function_calls
from morph_net.framework import op_vocabulary
from morph_net.framework import static_shapes
from morph_net.keras import graph_functions

__all__ = ['TracedModel', 'check_model', 'get_input_signature',
           'trace_model', 'map_placeholders_to_layers',
           'map_placeholders_to_owners']

_SCOPE_SUFFIX = re.compile(r'_\d+$')  # Keras uniquifies scopes: conv_1.


def _layer_description(model) -> str:
  return "model '%s' (%s)" % (model.name, type(model).__name__)


def get_input_signature(model, input_shape=None) -> List[tf.TensorSpec]:
  """Returns TensorSpecs (batch dimension None) for the model's inputs.

  Args:
    model: a built Keras model.
    input_shape: optional shape (without batch) or list of shapes; needed
      for subclassed models and to fix unknown spatial sizes.

  Returns:
    A list of tf.TensorSpec, one per model input.

  Raises:
    InvalidArgumentError: if the model is not built or a spatial size is
      unknown.
  """
  if input_shape is not None:
    shapes = (list(input_shape) if input_shape and
              isinstance(input_shape[0], (list, tuple)) else [input_shape])
    dtypes = [tf.float32] * len(shapes)
  else:
    if not getattr(model, 'built', False):
      raise errors.InvalidArgumentError(
          '%s is not built, so its channels cannot be traced. Build it first '
          '(call it on a batch, or model.build((None, H, W, C))), or pass '
          'input_shape=(H, W, C).' % _layer_description(model))
    inputs = _model_inputs(model)
    if not inputs:
      raise errors.InvalidArgumentError(
          '%s has no known input tensors (subclassed models do not record '
          'them). Pass input_shape=(H, W, C).' % _layer_description(model))
    shapes = [tuple(t.shape)[1:] for t in inputs]
    dtypes = [tf.as_dtype(getattr(t, 'dtype', 'float32') or 'float32')
              for t in inputs]
  specs = []
  for shape, dtype in zip(shapes, dtypes):
    if any(d is None for d in shape):
      raise errors.InvalidArgumentError(
          '%s has an unknown input size %s; costs depend on the spatial size. '
          'Pass input_shape=(H, W, C) with the size you train or serve at.' %
          (_layer_description(model), (None,) + tuple(shape)))
    specs.append(tf.TensorSpec((None,) + tuple(int(d) for d in shape), dtype))
  return specs


def _model_inputs(model):
  try:
    inputs = model.inputs
  except (AttributeError, ValueError):
    return None
  return list(inputs) if inputs else None


# Name scope prefix of the ops a keras.ops operation node of a functional
# model traces to ('<model>/op.relu/Relu'): Keras scopes layers, not
# operations, and the structure cost maps ops to nodes by scope.
OPERATION_SCOPE_PREFIX = 'op.'


@contextlib.contextmanager
def _operations_in_name_scopes():
  """While tracing, runs every keras.ops operation node of a functional
  model in a name scope `op.<operation name>` (layers scope themselves).

  Patches the function Keras 3's functional models wrap each node call
  with; without it (another Keras version) operations stay unscoped.
  """
  try:
    from keras.src.layers.layer import Layer  # pylint: disable=g-import-not-at-top
    from keras.src.models import functional  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield
    return
  original = getattr(functional, 'operation_fn', None)
  if original is None:
    yield
    return

  def scoped(operation, **call_context_args):
    call = original(operation, **call_context_args)
    if isinstance(operation, Layer):
      return call

    def in_scope(*args, **kwargs):
      with tf.name_scope(OPERATION_SCOPE_PREFIX + operation.name):
        return call(*args, **kwargs)
    return in_scope

  functional.operation_fn = scoped
  try:
    yield
  finally:
    functional.operation_fn = original


def trace_model(model, input_signature: Sequence[tf.TensorSpec]):
  """Traces `model(inputs, training=False)` into a WrappedFunction.

  Returns:
    A tf.compat.v1 WrappedFunction whose graph holds the model's forward pass.
  """
  if len(input_signature) == 1:
    fn = lambda x: model(x, training=False)
  else:
    fn = lambda *xs: model(list(xs), training=False)
  with _operations_in_name_scopes():
    return tf.compat.v1.wrap_function(fn, list(input_signature))


def _variable_handles(variable):
  """Eager handles of a Keras variable (all replicas for distributed ones)."""
  value = getattr(variable, '_value', None)  # Keras 3 wraps a tf.Variable.
  if value is None or isinstance(value, tf.Tensor):
    value = getattr(variable, 'value', variable)
  if callable(value):  # tf_keras: `value` is a method of tf.Variable.
    value = variable
  components = getattr(value, 'values', None)
  candidates = list(components) if components is not None else [value]
  handles = []
  for component in candidates:
    try:
      handles.append(component.handle)
    except (AttributeError, ValueError, RuntimeError):
      continue
  return handles


def map_placeholders_to_layers(model, graph, layers: Optional[Iterable] = None
                               ) -> Dict[tf.Tensor, str]:
  """Maps the graph placeholders of captured variables to layer names.

  A variable belongs to the innermost layer that owns it, so variables of a
  nested model map to the nested model's layers.

  Args:
    model: the traced Keras model.
    graph: the graph of `trace_model(model, ...)`.
    layers: the layers variables may map to (default: every layer of
      `model`, nested ones included). Passing `model.layers` maps the
      variables of a nested model to the nested model itself.

  Returns:
    {internal placeholder tensor reference: layer name}.
  """
  owner = {}
  if layers is None:
    layers = model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  for layer in sorted(layers, key=lambda l: -len(l.weights)):
    for variable in layer.weights:
      for handle in _variable_handles(variable):
        owner[id(handle)] = layer.name  # Smaller (inner) layers win.
  result = {}
  for external, internal in graph.captures:
    name = owner.get(id(external))
    if name is not None:
      result[internal.ref()] = name
  return result


def map_placeholders_to_owners(model, graph) -> Dict[Any, List[str]]:
  """Maps the graph placeholders of captured variables to every layer
  owning them, innermost first (a recurrent cell, its RNN layer, a
  Bidirectional wrapper, a nested model ...).

  Args:
    model: the traced Keras model.
    graph: the graph of `trace_model(model, ...)`.

  Returns:
    {internal placeholder tensor reference: [layer names]}.
  """
  depth = {}

  def visit(layer, level):
    for child in layer._flatten_layers(include_self=False, recursive=False):  # pylint: disable=protected-access
      if id(child) not in depth:
        depth[id(child)] = (level, child)
        visit(child, level + 1)

  visit(model, 0)
  owners = {}
  for level, layer in sorted(depth.values(), key=lambda item: -item[0]):
    for variable in layer.weights:
      for handle in _variable_handles(variable):
        names = owners.setdefault(id(handle), [])
        if layer.name not in names:
          names.append(layer.name)
  result = {}
  for external, internal in graph.captures:
    names = owners.get(id(external))
    if names:
      result[internal.ref()] = names
  return result


def _variable_placeholder(tensor: tf.Tensor) -> Optional[tf.Tensor]:
  """The captured resource placeholder a variable read comes from, or None.

  Forwarding ops (Identity, Cast) and the reshape-like ops Keras 3 puts
  between a kernel variable and its user (the ExpandDims of a Conv1D
  kernel, the Reshape of a Dense kernel on rank >= 3, Squeeze) are followed
  (`op_vocabulary.walk_back`).
  """
  tensor = op_vocabulary.walk_back(tensor, through_reshapes=True)
  if tensor.op.type != 'ReadVariableOp' or not tensor.op.inputs:
    return None
  handle = tensor.op.inputs[0]
  return handle if handle.dtype == tf.resource else None


def check_model(model) -> None:
  """Raises unless `model` is a Keras model of the Keras in use, float32 or
  mixed_float16.

  Raises:
    InvalidArgumentError: naming the model, its type and the fix.
  """
  keras = compat.get_keras()
  if not isinstance(model, keras.Model):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `model`. Expected a %s.Model, received '
        '%r (%s). With TF_USE_LEGACY_KERAS=1 models must come from tf_keras,'
        ' otherwise from keras 3.' % (keras.__name__, model,
                                      type(model).__name__))
  policy = getattr(getattr(model, 'dtype_policy', None), 'name', None)
  if policy and 'float16' in policy and policy != 'mixed_float16':
    raise errors.InvalidArgumentError(
        "Model '%s' uses dtype policy %r; MorphNet supports float32 and "
        "mixed_float16 models." % (model.name, policy))


class TracedModel(object):
  """A Keras model traced once, with its boundaries and op -> layer map.

  Attributes:
    model: the Keras model.
    input_signature: one `tf.TensorSpec` per model input (batch None).
    function: the `tf.compat.v1.wrap_function` of the forward pass.
    graph: its graph.
    input_ops: the ops of the model inputs (the analysis' input boundary).
    output_ops: the ops of the model outputs (its output boundary).

  Args:
    model: a built Keras model (Sequential, functional, subclassed; nested
      models and shared layers allowed).
    input_shape: input shape without batch (or a list of them); required for
      subclassed models and models with unknown spatial sizes.

  Raises:
    InvalidArgumentError: for an object that is not a model of the Keras in
      use, a float16 model, an unbuilt model or an unknown input size.
  """

  def __init__(self, model, input_shape=None):
    check_model(model)
    self.model = model
    self.input_signature = get_input_signature(model, input_shape)
    self.function = trace_model(model, self.input_signature)
    self.graph = self.function.graph
    self.input_ops = [t.op for t in self.graph.inputs
                      if t.dtype != tf.resource]
    self.output_ops = [t.op for t in
                       tf.nest.flatten(self.graph.structured_outputs)]
    # Regularizers built on the trace add their own ops to the graph later.
    self._forward_op_count = len(self.graph.get_operations())
    # Reshapes whose static shape misses what their shape input proves (a
    # Dense on a rank >= 3 input, traced with an unknown batch): refined
    # here, so every reader of the trace -- not only a regularizer's
    # manager -- sees the rows a MatMul multiplies per example.
    for op in self.forward_ops():
      static_shapes.refine_reshape_shape(op)
    self._placeholder_layers = {}  # top_level -> {placeholder ref: name}
    self._placeholder_owners = None  # {placeholder ref: [names]}

  def forward_ops(self) -> List[tf.Operation]:
    """The ops of the model's forward pass, in creation order (not the ops
    regularizers built on the trace added to the graph since)."""
    return self.graph.get_operations()[:self._forward_op_count]

  def build_regularizer(self, regularizer_class, extra_output_ops=(),
                        extra_input_ops=(), **regularizer_kwargs):
    """Builds a network regularizer on the traced graph.

    Args:
      regularizer_class: a class of `morph_net.network_regularizers`.
      extra_output_ops: ops added to the output boundary (the inputs of a
        part of the graph costed elsewhere, e.g. a recurrent loop).
      extra_input_ops: ops added to the input boundary (that part's
        outputs).
      **regularizer_kwargs: its arguments other than the boundaries.

    Returns:
      The regularizer, whose ops live in `graph`.
    """
    with self.graph.as_default():
      return regularizer_class(
          output_boundary=self.output_ops + list(extra_output_ops),
          input_boundary=self.input_ops + list(extra_input_ops),
          **regularizer_kwargs)

  def function_of(self, fetches: Any):
    """A function computing `fetches` (tensors of `graph`) from the live
    variables; see `graph_functions.subgraph_function`."""
    return graph_functions.subgraph_function(self.function, fetches)

  def _layers_by_placeholder(self, top_level: bool) -> Dict[Any, str]:
    if top_level not in self._placeholder_layers:
      self._placeholder_layers[top_level] = map_placeholders_to_layers(
          self.model, self.graph,
          layers=self.model.layers if top_level else None)
    return self._placeholder_layers[top_level]

  def layer_name(self, op: tf.Operation,
                 top_level: bool = False) -> Optional[str]:
    """The Keras layer whose weights `op` reads (as input 1), or None.

    Args:
      op: an op of `graph` (a conv, matmul, batch norm scale ...).
      top_level: name the layer of `model.layers` that holds the weights
        (a nested model counts as one layer) instead of the innermost one.
    """
    placeholder = self.kernel_placeholder(op)
    if placeholder is None:
      return None
    return self._layers_by_placeholder(top_level).get(placeholder.ref())

  def known_layer_name(self, op: tf.Operation,
                       layer_names: Collection[str]) -> Optional[str]:
    """The layer among `layer_names` whose weights `op` reads, or None.

    The innermost layer owning the weights that is among them: a layer of
    a nested model (which surgery's flat view knows), or a layer holding
    the weights in sublayers (a recurrent layer or a Bidirectional wrapper
    of its cells, a MultiHeadAttention of its projections), at any depth of
    nesting.
    """
    placeholder = self.kernel_placeholder(op)
    if placeholder is None:
      return None
    if self._placeholder_owners is None:
      self._placeholder_owners = map_placeholders_to_owners(self.model,
                                                            self.graph)
    for name in self._placeholder_owners.get(placeholder.ref(), ()):
      if name in layer_names:
        return name
    return None

  def kernel_placeholder(self, op: tf.Operation) -> Optional[tf.Tensor]:
    """The captured variable `op` reads as its input 1 (a kernel), or None.

    For a function call, the variable its body's conv or matmul reads.

    Two ops of a shared layer return the same placeholder.
    """
    if op.type in op_vocabulary.CALL_OP_TYPES:
      # A call (Keras 3's grouped conv): the kernel its body's op reads.
      called = function_calls.called_op(op)
      if called is None:
        return None
      if called.weights.dtype == tf.resource:  # The body reads the variable.
        return called.weights
      return _variable_placeholder(called.weights)
    if len(op.inputs) < 2:
      return None
    return _variable_placeholder(op.inputs[1])  # Kernels: input 1.

  @staticmethod
  def scope_layer_name(op: tf.Operation,
                       layer_names: Collection[str]) -> Optional[str]:
    """The layer among `layer_names` whose name scope holds `op`, or None.

    For ops that read no weights (activations, pooling, merges), which
    `layer_name` cannot map. Keras names an op `<model>_1/<layer>_1/<op>`;
    the model scope is skipped and the first scope that names a layer (with
    or without the `_<n>` suffix) wins.
    """
    for part in op.name.split('/')[1:]:
      stripped = _SCOPE_SUFFIX.sub('', part)
      if stripped in layer_names:
        return stripped
      if part in layer_names:
        return part
    return None

  @staticmethod
  def scope_operation_name(op: tf.Operation) -> Optional[str]:
    """The keras.ops operation node of a functional model whose call traced
    `op` (from its `op.<name>` scope, see `OPERATION_SCOPE_PREFIX`), or
    None."""
    for part in op.name.split('/')[1:-1]:
      if part.startswith(OPERATION_SCOPE_PREFIX):
        return part[len(OPERATION_SCOPE_PREFIX):]
    return None
