"""The original MorphNet's module paths that now name modules elsewhere.

The original kept the op handlers in `morph_net.framework`; they live in
`morph_net.op_handlers`. Its `framework/tpu_util.py` (TPU-loop helpers, used
here only by tests) lives in `morph_net.compat.tpu_util`. Each keeps its
original path: `install()` adds an import hook that resolves
`morph_net.framework.<name>` to the very same module object, so
`from morph_net.framework import concat_op_handler`,
`import morph_net.framework.op_handlers` and
`mock.patch('morph_net.framework.conv_source_op_handler.X')` all see (and
patch) the implementation. These paths are the original's API, kept for its
users: they are not deprecated and do not warn.

`morph_net.framework` installs the hook when it is imported, which every
import of an original path does first. The modules are imported by name when
an original path is: nothing here imports them (this package stays the
lowest floor).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ['FRAMEWORK_PACKAGE', 'HANDLER_MODULES', 'ORIGINAL_PATHS',
           'install']

FRAMEWORK_PACKAGE = 'morph_net.framework'

# Modules of morph_net.op_handlers that are also morph_net.framework.<name>.
HANDLER_MODULES = frozenset([
    'batch_norm_source_op_handler', 'concat_op_handler',
    'conv2d_transpose_source_op_handler', 'conv_source_op_handler',
    'depth_to_space_op_handler', 'depthwise_convolution_op_handler',
    'function_call_op_handler', 'group_lasso_base_op_handler',
    'grouping_op_handler', 'leaf_op_handler',
    'logistic_sigmoid_source_op_handler', 'matmul_source_op_handler',
    'op_handlers', 'output_non_passthrough_op_handler', 'reshape_op_handler',
    'slice_op_handler', 'split_op_handler'
])

# {name under morph_net.framework: the module it is}.
ORIGINAL_PATHS = dict(
    {name: 'morph_net.op_handlers.' + name for name in HANDLER_MODULES},
    tpu_util='morph_net.compat.tpu_util')


class _OriginalPathAliases(importlib.abc.MetaPathFinder,
                           importlib.abc.Loader):
  """Resolves `morph_net.framework.<name>` of ORIGINAL_PATHS to its module."""

  is_morph_net_original_path_alias = True

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Unused: the name alone decides.
    package, _, name = fullname.rpartition('.')
    if package != FRAMEWORK_PACKAGE or name not in ORIGINAL_PATHS:
      return None
    return importlib.util.spec_from_loader(fullname, self)

  def create_module(self, spec):
    return importlib.import_module(
        ORIGINAL_PATHS[spec.name.rpartition('.')[2]])

  def exec_module(self, module):
    del module  # Already executed under its own name.


def install() -> None:
  """Adds the import hook to `sys.meta_path` (once per process)."""
  if not any(getattr(finder, 'is_morph_net_original_path_alias', False)
             for finder in sys.meta_path):
    sys.meta_path.append(_OriginalPathAliases())
