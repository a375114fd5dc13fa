"""Deprecated: moved to `morph_net.latency.timing`; import that instead.

`morph_net.keras.latency_timing` stays importable: an alias of the very
same module object, with a DeprecationWarning (`morph_net.compat.moved`).
"""

from morph_net.compat import moved

moved.alias_module(__name__, 'morph_net.latency.timing')
