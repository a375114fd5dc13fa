"""Selects Keras 3 or tf_keras (Keras 2) the way TensorFlow does.

With `TF_USE_LEGACY_KERAS=1` TensorFlow's `tf.keras` is tf_keras; MorphNet
follows the same switch so that it works with the user's models either way.

Also the compile arguments of a model as objects (`compile_arguments`) and
a map over the losses and metrics among them (`map_compile_objects`), which
re-attaching a regularizer and rebuilding a model both use.
"""

import os
import sys
from typing import Any, Callable, Dict, Optional

__all__ = ['use_legacy_keras', 'get_keras', 'keras_of', 'compile_arguments',
           'map_compile_objects', 'COMPILE_OBJECT_ARGUMENTS']

# The `compile` arguments that hold loss and metric objects.
COMPILE_OBJECT_ARGUMENTS = ('loss', 'metrics', 'weighted_metrics')


def use_legacy_keras() -> bool:
  """Whether TF_USE_LEGACY_KERAS selects tf_keras."""
  return os.environ.get('TF_USE_LEGACY_KERAS', '').lower() in ('1', 'true',
                                                               'yes')


def get_keras():
  """Returns the keras module in use (keras 3 or tf_keras)."""
  if use_legacy_keras():
    import tf_keras  # pylint: disable=g-import-not-at-top
    return tf_keras
  import keras  # pylint: disable=g-import-not-at-top
  return keras


def keras_of(model):
  """The keras module (keras 3 or tf_keras) whose Model `model` is."""
  tf_keras = sys.modules.get('tf_keras')
  if tf_keras is not None and isinstance(model, tf_keras.Model):
    return tf_keras
  import keras  # pylint: disable=g-import-not-at-top
  return keras


def compile_arguments(model) -> Optional[Dict[str, Any]]:
  """The keyword arguments of `model.compile`, as new objects.

  Deserialized from `model.get_compile_config()`, as Keras does when it
  loads a compiled model: the optimizer, losses and metrics are new objects
  of the same configuration (the optimizer has no state).

  Args:
    model: a Keras 3 or tf_keras model.

  Returns:
    {compile argument: value}, or None if the model is not compiled.
  """
  config = model.get_compile_config()
  if not config:
    return None
  return keras_of(model).saving.deserialize_keras_object(config)


def map_compile_objects(arguments: Dict[str, Any],
                        function: Callable[[Any], Any]) -> Dict[str, Any]:
  """Applies `function` to every loss and metric object of compile arguments.

  Args:
    arguments: {compile argument: value}, e.g. from `compile_arguments`.
    function: object -> its replacement; None drops a metric (and a loss
      of a list or dict of losses, for an output that then has none).

  Returns:
    New arguments; lists, tuples and dicts (per-output losses and metrics)
    are rebuilt, other values are kept.
  """
  def walk(value):
    if isinstance(value, dict):
      mapped = {key: walk(item) for key, item in value.items()}
      return {key: item for key, item in mapped.items() if item is not None}
    if isinstance(value, (list, tuple)):
      mapped = [walk(item) for item in value]
      return type(value)(item for item in mapped if item is not None)
    if value is None or isinstance(value, str):
      return value
    return function(value)

  result = dict(arguments)
  for name in COMPILE_OBJECT_ARGUMENTS:
    if result.get(name) is not None:
      result[name] = walk(result[name])
  return result
