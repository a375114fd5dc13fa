"""Nested models seen as one flat layer graph.

A functional or Sequential model used as a layer of another (a
`keras.applications` base under a new head, a Sequential head on a
functional base) hides its layers from the outer model's layer graph. Surgery
works on a flat view instead: `flatten_nested(model)` calls every layer of
every nested functional or Sequential model directly in one functional
model, so the channel model, the rebuild plan, the clone and the weight copy
see (and narrow) the inner layers like any other. The rebuilt model is that
flat functional model: the same layers, names and weights, without the
nesting. Nested subclassed models stay one (opaque) layer.
"""

from typing import Dict

import keras
from keras import tree

__all__ = ['is_graph_model', 'has_nested_models', 'flatten_nested']


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


def _run(functional, tensors: Dict[int, object]) -> None:
  """Calls the layers of `functional` on the tensors of `tensors`.

  `tensors` maps id(tensor of `functional`) to the tensor of the flat model
  standing for it; it is filled with the outputs of every node. Nested
  functional and Sequential models are entered.
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
        _run(inner, inner_tensors)
        outputs = [inner_tensors[id(t)] for t in inner.outputs]
      else:
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = tree.flatten(layer(*args, **kwargs))
      for x, y in zip(node.outputs, outputs):
        tensors[id(x)] = y


def flatten_nested(functional):
  """A functional model running the layers of `functional`, nested ones flat.

  Args:
    functional: a functional Keras model (see `channel_model.functional_view`).

  Returns:
    A new functional model with new inputs of the same shapes, whose layers
    are the layers of `functional` and of its nested functional and
    Sequential models (the same layer objects, so the same weights). It has
    the name of `functional`.
  """
  inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype,
                        name=t._keras_history.operation.name)  # pylint: disable=protected-access
            for t in functional.inputs]
  tensors = {id(t): new for t, new in zip(functional.inputs, inputs)}
  _run(functional, tensors)
  outputs = [tensors[id(t)] for t in functional.outputs]
  return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                     name=functional.name)
