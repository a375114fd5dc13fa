"""Framework core: op regularizer manager, op handler interface, combinators.

The op handlers live in `morph_net.op_handlers`. The original MorphNet kept
them in this package, so each handler module is also importable here under
its original path (`morph_net.framework.grouping_op_handler`,
`morph_net.framework.op_handlers`, ...): the import system resolves those
names to the very same module objects, so `from morph_net.framework import
concat_op_handler`, `import morph_net.framework.op_handlers` and
`mock.patch('morph_net.framework.conv_source_op_handler.X')` all see (and
patch) the implementation.
"""

import importlib
import importlib.abc
import importlib.util
import sys

# Modules of morph_net.op_handlers that are also morph_net.framework.<name>.
HANDLER_MODULES = frozenset([
    'batch_norm_source_op_handler', 'concat_op_handler',
    'conv2d_transpose_source_op_handler', 'conv_source_op_handler',
    'depth_to_space_op_handler', 'depthwise_convolution_op_handler',
    'function_call_op_handler', 'group_lasso_base_op_handler', 'grouping_op_handler', 'leaf_op_handler',
    'logistic_sigmoid_source_op_handler', 'matmul_source_op_handler',
    'op_handlers', 'output_non_passthrough_op_handler', 'reshape_op_handler',
    'slice_op_handler', 'split_op_handler'
])
_HANDLER_PACKAGE = 'morph_net.op_handlers'


class _HandlerModuleAliases(importlib.abc.MetaPathFinder,
                            importlib.abc.Loader):
  """Resolves `morph_net.framework.<handler module>` to the op_handlers one."""

  is_morph_net_handler_alias = True

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Unused: the name alone decides.
    package, _, name = fullname.rpartition('.')
    if package != __name__ or name not in HANDLER_MODULES:
      return None
    return importlib.util.spec_from_loader(fullname, self)

  def create_module(self, spec):
    name = spec.name.rpartition('.')[2]
    return importlib.import_module('%s.%s' % (_HANDLER_PACKAGE, name))

  def exec_module(self, module):
    del module  # Already executed under its own name.


if not any(getattr(finder, 'is_morph_net_handler_alias', False)
           for finder in sys.meta_path):
  sys.meta_path.append(_HandlerModuleAliases())
