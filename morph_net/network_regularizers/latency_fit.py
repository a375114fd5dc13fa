"""Deprecated: moved to `morph_net.latency.fit`; import that instead.

`morph_net.network_regularizers.latency_fit` stays importable: an alias of the very
same module object, with a DeprecationWarning (`morph_net.compat.moved`).
"""

from morph_net.compat import moved

moved.alias_module(__name__, 'morph_net.latency.fit')
