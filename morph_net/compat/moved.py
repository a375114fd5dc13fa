"""Old module paths of moved modules: deprecated aliases of the new ones.

A module that moved leaves a two-line module at its old path:

    from morph_net.compat import moved
    moved.alias_module(__name__, 'morph_net.latency.timing')

Importing the old path warns (DeprecationWarning, naming the new path) and
binds the old name to the very module object at the new path, so
`from old.path import name`, `import old.path as m` and
`mock.patch('old.path.name')` all see (and patch) the implementation.
The new module is imported by name, at the time the old path is imported:
the old package keeps no import of the new one (no import circle, nothing
imports upward).
"""

import importlib
import sys
import warnings

__all__ = ['alias_module']


def alias_module(old_name: str, new_name: str):
  """Makes module `old_name` the module `new_name`, with a warning.

  Call it from the module at the old path, as `alias_module(__name__, ...)`:
  the import system then binds the old name (in `sys.modules` and as an
  attribute of the old package) to the new module.

  Args:
    old_name: the old dotted module path (the caller's `__name__`).
    new_name: the dotted path the module moved to.

  Returns:
    The module at `new_name`.
  """
  warnings.warn(
      '%s moved to %s; the old path is deprecated and will be removed: '
      'import %s instead.' % (old_name, new_name, new_name),
      # Level 3: the line that imported the old path (the warnings module skips
      # the import system's frames), which Python's default filter shows
      # when it is in `__main__`.
      DeprecationWarning, stacklevel=3)
  module = importlib.import_module(new_name)
  sys.modules[old_name] = module
  return module
