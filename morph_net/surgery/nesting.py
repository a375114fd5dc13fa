"""Nested models seen as one flat layer graph, and cloned keeping the nesting.

A functional or Sequential model used as a layer of another (a
`keras.applications` base under a new head, a Sequential head on a
functional base) hides its layers from the outer model's layer graph. Surgery
analyses a flat view instead: `flatten_nested(model)` calls every layer of
every nested functional or Sequential model directly in one functional
model, so the channel model, the rebuild plan and the weight copy see (and
narrow) the inner layers like any other. Layer names are unique in the flat
view, as Keras requires.

`clone_nested(model, clone_layer, call_layer)` clones the model keeping its
nesting: every nested model becomes a new model of the same class and name
whose inputs take the (possibly narrower) shapes of the tensors it is
called on, so a narrower base stays a nested model under the same head.
`tap(model, names)` reads the inputs of named layers, nested or not.
Nested subclassed models stay one (opaque) layer.
"""

from typing import Callable, Dict, List, Optional, Sequence

import keras
from keras import tree

__all__ = ['is_graph_model', 'has_nested_models', 'flatten_nested',
           'leaf_layers', 'NotNestableError', 'clone_nested', 'tap']

# hook(layer, args, kwargs) sees every call of a leaf layer in a flat walk.
Hook = Callable[[object, tuple, dict], None]


def is_graph_model(layer) -> bool:
  """Whether `layer` is a functional or Sequential model (a layer graph)."""
  if not isinstance(layer, keras.Model):
    return False
  if isinstance(layer, keras.Sequential):
    return bool(layer.built and getattr(layer, 'inputs', None))
  return hasattr(layer, '_nodes_by_depth')


def has_nested_models(functional) -> bool:
  """Whether a functional model has a functional or Sequential layer."""
  return any(is_graph_model(layer) for layer in functional.layers)


def _graph_of(model):
  """The functional model whose nodes run `model` (Sequential included)."""
  if isinstance(model, keras.Sequential):
    return keras.Model(model.inputs, model.outputs, name=model.name)
  return model


def leaf_layers(model) -> List:
  """The layers of `model` and of its nested models, without the models."""
  return [layer for layer in model._flatten_layers(  # pylint: disable=protected-access
      include_self=False, recursive=True) if not is_graph_model(layer)]


def _run(functional, tensors: Dict[int, object],
         hook: Optional[Hook] = None) -> None:
  """Calls the layers of `functional` on the tensors of `tensors`.

  `tensors` maps id(tensor of `functional`) to the tensor of the flat model
  standing for it; it is filled with the outputs of every node. Nested
  functional and Sequential models are entered. `hook`, if given, sees the
  arguments of every leaf layer call.
  """
  nodes_by_depth = functional._nodes_by_depth  # pylint: disable=protected-access
  for depth in sorted(nodes_by_depth, reverse=True):
    for node in nodes_by_depth[depth]:
      if node.is_input or not node.operation:
        continue
      layer = node.operation
      if is_graph_model(layer):
        inner = _graph_of(layer)
        inner_tensors = {
            id(t): tensors[id(x)]
            for t, x in zip(inner.inputs, tree.flatten(node.input_tensors))}
        _run(inner, inner_tensors, hook)
        outputs = [inner_tensors[id(t)] for t in inner.outputs]
        for x, y in zip(node.outputs, outputs):
          _dense_like(x, y)
      else:
        args, kwargs = node.arguments.fill_in(tensors)
        if hook is not None:
          hook(layer, args, kwargs)
        outputs = tree.flatten(layer(*args, **kwargs))
      for x, y in zip(node.outputs, outputs):
        tensors[id(x)] = y


def _dense_like(outer, inner) -> None:
  """Marks `inner` (a nested model's output in the flat view) dense when the
  nested model's output `outer` is.

  Keras marks the result of multiplying a symbolic tensor by a NumPy or
  backend constant sparse (`ops.multiply` reads a missing `sparse`
  attribute as True); a nested model's output is dense again, and the
  layers after it were built on that. Flat, they would see the sparse
  flag (a custom layer then fails to infer its output).
  """
  if (isinstance(inner, keras.KerasTensor) and
      isinstance(outer, keras.KerasTensor) and inner.sparse and
      not outer.sparse):
    inner._sparse = False  # pylint: disable=protected-access


def _new_inputs(model_inputs, like: Sequence):
  """New Input tensors named as `model_inputs`, shaped as the tensors `like`."""
  return [keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype,
                      name=t._keras_history.operation.name)  # pylint: disable=protected-access
          for t, x in zip(model_inputs, like)]


def flatten_nested(functional, hook: Optional[Hook] = None):
  """A functional model running the layers of `functional`, nested ones flat.

  Args:
    functional: a functional Keras model (see `channel_model.functional_view`).
    hook: optional; sees the arguments of every leaf layer call.

  Returns:
    A new functional model with new inputs of the same shapes, whose layers
    are the layers of `functional` and of its nested functional and
    Sequential models (the same layer objects, so the same weights). It has
    the name of `functional`.
  """
  inputs = _new_inputs(functional.inputs, functional.inputs)
  tensors = {id(t): new for t, new in zip(functional.inputs, inputs)}
  _run(functional, tensors, hook)
  outputs = [tensors[id(t)] for t in functional.outputs]
  return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                     name=functional.name)


def tap(model, names: Sequence[str], with_outputs: bool = False):
  """A functional model returning the input of each named layer.

  Args:
    model: a functional or Sequential model, possibly with nested ones.
    names: names of leaf layers (of any nesting level) to read the first
      input (of the first call) of.
    with_outputs: whether `model`'s own outputs follow those inputs.

  Returns:
    A functional model on new inputs of `model`'s shapes, sharing its
    layers, with one output per name found (in the order of `names`), then
    `model`'s outputs if `with_outputs`, and the list of those names.
  """
  graph = _graph_of(model)
  wanted = set(names)
  found = {}

  def hook(layer, args, kwargs):
    del kwargs
    if layer.name in wanted and layer.name not in found and args:
      found[layer.name] = tree.flatten(args[0])[0]

  flat = flatten_nested(graph, hook)
  present = [n for n in names if n in found]
  outputs = [found[n] for n in present]
  if with_outputs:
    outputs += tree.flatten(flat.outputs)
  return keras.Model(flat.inputs, outputs), present


class NotNestableError(Exception):
  """A nested model of the clone would lose some of its inputs or outputs."""


class _Cloner(object):
  """Clones a graph model and its nested models; see `clone_nested`."""

  def __init__(self, clone_layer, call_layer, vanished):
    self._clone_layer = clone_layer
    self._call_layer = call_layer
    self._vanished = vanished
    self.layers = {}  # name -> clone (leaf layers and nested models)

  def run(self, functional, tensors):
    nodes_by_depth = functional._nodes_by_depth  # pylint: disable=protected-access
    for depth in sorted(nodes_by_depth, reverse=True):
      for node in nodes_by_depth[depth]:
        if node.is_input or not node.operation:
          continue
        layer = node.operation
        if is_graph_model(layer):
          inputs = [tensors[id(x)] for x in tree.flatten(node.input_tensors)]
          outputs = self._call_nested(layer, inputs, len(node.outputs))
        else:
          if layer.name not in self.layers:
            self.layers[layer.name] = self._clone_layer(layer)
          args, kwargs = node.arguments.fill_in(tensors)
          outputs = tree.flatten(
              self._call_layer(self.layers[layer.name], *args, **kwargs))
        for x, y in zip(node.outputs, outputs):
          tensors[id(x)] = y

  def _call_nested(self, layer, inputs, num_outputs):
    gone = [x is self._vanished for x in inputs]
    if all(gone):
      return [self._vanished] * num_outputs
    if any(gone):
      raise NotNestableError('some inputs of nested model %r vanish' %
                             layer.name)
    if layer.name not in self.layers:
      self.layers[layer.name] = self.clone_model(layer, inputs)
    new = self.layers[layer.name]
    if new is self._vanished:
      return [self._vanished] * num_outputs
    return tree.flatten(new(inputs if len(inputs) > 1 else inputs[0]))

  def clone_model(self, model, like):
    """The clone of graph model `model` for inputs shaped as `like`."""
    graph = _graph_of(model)
    inputs = _new_inputs(graph.inputs, like)
    tensors = {id(t): new for t, new in zip(graph.inputs, inputs)}
    self.run(graph, tensors)
    outputs = [tensors[id(t)] for t in graph.outputs]
    gone = [y is self._vanished for y in outputs]
    if all(gone):
      return self._vanished
    if any(gone):
      raise NotNestableError('some outputs of nested model %r vanish' %
                             model.name)
    if isinstance(model, keras.Sequential):
      new = keras.Sequential(
          [inputs[0]] + [self.layers[l.name] for l in model.layers],
          name=model.name)
    else:
      new = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                        name=model.name)
    if not model.trainable:  # True would unfreeze layers frozen one by one.
      new.trainable = False
    return new


def clone_nested(model, clone_layer: Callable, call_layer: Callable,
                 vanished: object):
  """Clones a functional or Sequential model, keeping nested models nested.

  Args:
    model: a built functional or Sequential Keras model.
    clone_layer: layer -> its clone (a new, unbuilt layer).
    call_layer: (clone, *args, **kwargs) -> its outputs, or `vanished`.
    vanished: the marker `call_layer` returns for a layer that vanished.

  Returns:
    The clone: a model of the same class and name, whose nested
    functional and Sequential models are clones of the same class and name
    built on inputs of the shapes they are called on.

  Raises:
    NotNestableError: when a nested model (or a Sequential model) would
      lose only some of its inputs or outputs, or a Sequential model one of
      its layers; the flat clone can express that.
  """
  cloner = _Cloner(clone_layer, call_layer, vanished)
  new = cloner.clone_model(model, model.inputs)
  if new is vanished:
    raise NotNestableError('the output of model %r vanishes' % model.name)
  if isinstance(model, keras.Sequential) and any(
      l.name not in cloner.layers for l in model.layers):
    raise NotNestableError('Sequential model %r loses layers' % model.name)
  return new
