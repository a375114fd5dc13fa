"""Imports tf_slim, the TF1 layer library of the original MorphNet's users.

tf_slim 1.1 imports `tf_keras.legacy_tf_layers`, which tf_keras 2.16 and
newer keep under `tf_keras.src.legacy_tf_layers`. `import_slim()` registers
the old module names as aliases of the new ones (only when the old names are
missing) before importing tf_slim, so `tf_slim.layers` and `tf_slim.nets`
build TF1 graphs next to TensorFlow 2.21.

Install with `pip install "morph-net[slim]"` (tf-slim and tf-keras).
"""

import importlib
import sys

from morph_net import errors

__all__ = ['import_slim']

_LEGACY_PACKAGE = 'tf_keras.legacy_tf_layers'
_LEGACY_SOURCE = 'tf_keras.src.legacy_tf_layers'
_LEGACY_MODULES = ('base', 'convolutional', 'core', 'normalization',
                   'pooling', 'variable_scope_shim')


def _register_legacy_layer_aliases():
  """Makes `tf_keras.legacy_tf_layers[.x]` resolve to tf_keras's modules."""
  try:
    importlib.import_module(_LEGACY_PACKAGE)
    return
  except ImportError:
    pass
  try:
    package = importlib.import_module(_LEGACY_SOURCE)
  except ImportError as e:
    raise errors.MissingDependencyError(
        'tf_slim needs tf_keras (its legacy TF1 layers), which could not be '
        'imported: %s. Install it with: pip install "morph-net[slim]".' %
        e) from e
  sys.modules.setdefault(_LEGACY_PACKAGE, package)
  for name in _LEGACY_MODULES:
    try:
      module = importlib.import_module('%s.%s' % (_LEGACY_SOURCE, name))
    except ImportError:
      continue
    sys.modules.setdefault('%s.%s' % (_LEGACY_PACKAGE, name), module)


def import_slim():
  """Returns the `tf_slim` module, ready to build TF1 graphs.

  Returns:
    The imported `tf_slim` package (`tf_slim.layers`, `tf_slim.nets` ...).

  Raises:
    MissingDependencyError: when tf_slim or tf_keras is not installed; the
      message gives the pip command.
  """
  _register_legacy_layer_aliases()
  try:
    return importlib.import_module('tf_slim')
  except ImportError as e:
    raise errors.MissingDependencyError(
        'The TF1 extras need tf_slim, which could not be imported: %s. '
        'Install it with: pip install "morph-net[slim]".' % e) from e
