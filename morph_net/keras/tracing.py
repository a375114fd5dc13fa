"""Tracing a Keras model into a graph MorphNet can analyse.

The model is traced once with `tf.compat.v1.wrap_function`, whose graph
captures the model's variables. Functions pruned from that graph read the
live variables, so values computed from it (the regularization term, the
cost, alive vectors) follow training and are differentiable with respect to
the model's variables.
"""

import re
from typing import Collection, Dict, Iterable, List, Optional, Sequence

import tensorflow as tf

from morph_net import errors

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


def trace_model(model, input_signature: Sequence[tf.TensorSpec]):
  """Traces `model(inputs, training=False)` into a WrappedFunction.

  Returns:
    A tf.compat.v1 WrappedFunction whose graph holds the model's forward pass.
  """
  if len(input_signature) == 1:
    fn = lambda x: model(x, training=False)
  else:
    fn = lambda *xs: model(list(xs), training=False)
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


def variable_placeholder(tensor: tf.Tensor) -> Optional[tf.Tensor]:
  """Follows a variable read back to the captured resource placeholder."""
  for _ in range(64):
    if tensor.dtype == tf.resource:
      return tensor
    op = tensor.op
    if op.type not in ('ReadVariableOp', 'Identity', 'Cast') or not op.inputs:
      return None
    tensor = op.inputs[0]
  return None


def op_layer_name(op: tf.Operation, placeholder_layers) -> Optional[str]:
  """Name of the Keras layer whose weights `op` uses (input 1), or None."""
  if len(op.inputs) < 2:
    return None
  placeholder = variable_placeholder(op.inputs[1])  # Kernels are input 1.
  if placeholder is None:
    return None
  return placeholder_layers.get(placeholder.ref())


def scope_layer_name(op: tf.Operation,
                     layer_names: Collection[str]) -> Optional[str]:
  """The layer among `layer_names` whose name scope holds `op`, or None.

  For ops that read no weights (activations, pooling, merges), which
  `op_layer_name` cannot map. Keras names an op
  `<model>_1/<layer>_1/<op>`; the model scope is skipped and the first
  scope that names a layer (with or without the `_<n>` suffix) wins.
  """
  for part in op.name.split('/')[1:]:
    stripped = _SCOPE_SUFFIX.sub('', part)
    if stripped in layer_names:
      return stripped
    if part in layer_names:
      return part
  return None
