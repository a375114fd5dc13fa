"""The lowest floor, and the compatibility shims in one place.

`compat.keras` picks Keras 3 or tf_keras the way TensorFlow does;
`compat.slim` imports tf_slim, whose layers need tf_keras's legacy layers;
`compat.original_paths` keeps the original MorphNet's module paths
(`morph_net.framework.<op handler module>`, `morph_net.framework.tpu_util`)
naming the modules that moved; `compat.tpu_util` is the original's TPU-loop
helpers; `compat.moved` makes the old path of a module moved in this project
a deprecated alias of the new one.
Nothing in this package imports another MorphNet package but `errors` (the
aliases import their targets by name, when an old path is imported).
"""
