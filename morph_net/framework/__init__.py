"""Framework core: op regularizer manager, op handler interface, combinators.

The op handlers live in `morph_net.op_handlers` and the TPU-loop helpers in
`morph_net.compat.tpu_util`. The original MorphNet kept them in this
package, so each is also importable here under its original path
(`morph_net.framework.grouping_op_handler`, `morph_net.framework.op_handlers`,
`morph_net.framework.tpu_util`, ...), as the very same module object: see
`morph_net.compat.original_paths`, whose import hook importing this package
installs.
"""

from morph_net.compat import original_paths

# Modules of morph_net.op_handlers that are also morph_net.framework.<name>.
HANDLER_MODULES = original_paths.HANDLER_MODULES

original_paths.install()
